import { fail } from "./errors.ts";
import {
  isJsonObject,
  type JsonObject,
  JsonSyntaxError,
  type JsonValue,
  parseJson,
} from "./json.ts";
import { HEADER_PREFIX_BYTES, MAX_ADAPTER_BYTES, MAX_HEADER_BYTES } from "./limits.ts";
import { show } from "./show.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Checks 1–7: sizes, then the header as a JSON object. */
export function readHeader(bytes: Uint8Array): { header: JsonObject; dataStart: number } {
  if (bytes.length < HEADER_PREFIX_BYTES) {
    fail("file_too_small", `file is ${bytes.length} bytes; a header length needs 8`, {
      value: bytes.length,
      limit: HEADER_PREFIX_BYTES,
    });
  }
  if (bytes.length > MAX_ADAPTER_BYTES) {
    fail("file_too_large", `file is ${bytes.length} bytes; limit ${MAX_ADAPTER_BYTES}`, {
      value: bytes.length,
      limit: MAX_ADAPTER_BYTES,
    });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const low = view.getUint32(0, true);
  const high = view.getUint32(4, true);
  const length = high * 2 ** 32 + low; // exact up to 2^53; anything near that fails the limit
  if (high !== 0 || length > MAX_HEADER_BYTES) {
    fail("header_too_large", `header length ${length} is over the limit ${MAX_HEADER_BYTES}`, {
      value: length,
      limit: MAX_HEADER_BYTES,
    });
  }
  if (HEADER_PREFIX_BYTES + length > bytes.length) {
    fail(
      "header_out_of_bounds",
      `header length ${length} runs past the end of the ${bytes.length}-byte file`,
      { value: length, limit: bytes.length - HEADER_PREFIX_BYTES },
    );
  }
  let text: string;
  try {
    text = utf8.decode(bytes.subarray(HEADER_PREFIX_BYTES, HEADER_PREFIX_BYTES + length));
  } catch {
    fail("header_not_utf8", "header is not valid UTF-8");
  }
  let header: JsonValue;
  try {
    header = parseJson(text);
  } catch (e) {
    const message = e instanceof JsonSyntaxError ? e.message : String(e);
    fail("header_invalid_json", `header is not valid JSON: ${message}`, {
      position: e instanceof JsonSyntaxError ? e.position : undefined,
    });
  }
  if (!isJsonObject(header)) {
    fail("header_not_object", `header is ${show(header)}, not a JSON object`, { value: header });
  }
  return { header, dataStart: HEADER_PREFIX_BYTES + length };
}
