import { decodeAdapter } from "./decode.ts";
import { AdapterFormatError } from "./errors.ts";
import type { Adapter, AdapterExpectations } from "./types.ts";

export type AdapterValidation =
  | { ok: true; adapter: Adapter }
  | { ok: false; error: AdapterFormatError };

/** decodeAdapter as a value instead of a throw, for request handlers that map codes to answers. */
export function validateAdapterBytes(
  bytes: Uint8Array,
  expect: AdapterExpectations = {},
): AdapterValidation {
  try {
    return { ok: true, adapter: decodeAdapter(bytes, expect) };
  } catch (e) {
    if (e instanceof AdapterFormatError) return { ok: false, error: e };
    throw e;
  }
}
