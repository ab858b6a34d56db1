// The reader: every check of docs/adapter-format.md, in order, each with its own code.
// It throws AdapterFormatError and nothing else, and does work bounded by the input size.

import { DTYPE_BYTES, DTYPES, type Dtype, HOST_LITTLE_ENDIAN, isDtype } from "./dtype.ts";
import { AdapterFormatError, fail } from "./errors.ts";
import { bf16BitsToF32Bits, f16BitsToF32Bits, f16ToF32Table, f32FromBits } from "./float16.ts";
import { TENSOR_ORDER, type TensorName } from "./header.ts";
import {
  isJsonObject,
  type JsonObject,
  JsonSyntaxError,
  type JsonValue,
  parseJson,
} from "./json.ts";
import {
  HEADER_PREFIX_BYTES,
  MAX_ADAPTER_BYTES,
  MAX_CLASSES,
  MAX_HEADER_BYTES,
  MAX_HIDDEN,
} from "./limits.ts";
import {
  checkFactors,
  checkModel,
  checkModulesText,
  checkOptional,
  checkRankText,
  FORMAT,
  FORMAT_VERSION,
  METADATA_KEYS,
  OPTIONAL_KEYS,
  parseLabelsText,
  REQUIRED_KEYS,
} from "./metadata.ts";
import type { Adapter, AdapterExpectations, AdapterHead } from "./types.ts";

interface Entry {
  name: TensorName;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const show = (v: unknown): string => {
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return String(v);
  }
};

/** Steps 1–7: sizes, then the header as a JSON object. */
function readHeader(bytes: Uint8Array): { header: JsonObject; dataStart: number } {
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

interface Meta {
  metadata: Record<string, string>;
  model: string;
  factors: string;
  rank: number;
  modules: number;
  labels?: string[];
}

/** Steps 8–19: `__metadata__`. */
function readMetadata(header: JsonObject): Meta {
  const raw = header.__metadata__;
  if (!isJsonObject(raw)) {
    fail("metadata_missing", `__metadata__ is ${show(raw ?? "absent")}, not an object of strings`);
  }
  // Null prototype while checking, so a key such as "__proto__" is a key like any other.
  const metadata: Record<string, string> = Object.create(null);
  for (const key of Object.keys(raw).sort()) {
    const v = raw[key];
    if (typeof v !== "string") {
      fail("metadata_not_string", `__metadata__.${key} is ${show(v)}, not a string`, {
        key,
        value: v,
      });
    }
    metadata[key] = v;
  }
  if (metadata.format !== FORMAT) {
    fail("format_unknown", `format ${show(metadata.format)} is not "${FORMAT}"`, {
      value: metadata.format,
      allowed: [FORMAT],
    });
  }
  if (metadata.format_version !== FORMAT_VERSION) {
    fail(
      "format_version_unknown",
      `format_version ${show(metadata.format_version)} is not "${FORMAT_VERSION}"`,
      { value: metadata.format_version, allowed: [FORMAT_VERSION] },
    );
  }
  const unknown = Object.keys(metadata).filter((k) => !METADATA_KEYS.includes(k));
  if (unknown.length > 0) {
    fail(
      "metadata_key_unknown",
      `metadata keys ${unknown.join(", ")} are not part of format_version 1; allowed: ${METADATA_KEYS.join(", ")}`,
      { value: unknown, allowed: METADATA_KEYS },
    );
  }
  for (const key of REQUIRED_KEYS) {
    if (!Object.hasOwn(metadata, key)) {
      fail("metadata_key_missing", `metadata key "${key}" is missing`, { key });
    }
  }
  const meta: Meta = {
    metadata: { ...metadata },
    model: checkModel(metadata.model),
    factors: checkFactors(metadata.factors),
    rank: checkRankText(metadata.rank),
    modules: checkModulesText(metadata.modules),
  };
  if (metadata.labels !== undefined) meta.labels = parseLabelsText(metadata.labels);
  for (const key of OPTIONAL_KEYS) {
    if (metadata[key] !== undefined) checkOptional(key, metadata[key]);
  }
  return meta;
}

const isCount = (v: JsonValue | undefined): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** Steps 20–29: tensor names, entries, dtypes, shapes. */
function readEntries(header: JsonObject, meta: Meta): { entries: Entry[]; dtype: Dtype } {
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  const unknown = names.filter((k) => !(TENSOR_ORDER as readonly string[]).includes(k)).sort();
  if (unknown.length > 0) {
    fail(
      "tensor_unknown",
      `tensors ${unknown.map(show).join(", ")} are not R, head.weight, head.bias`,
      {
        value: unknown,
        allowed: TENSOR_ORDER,
      },
    );
  }
  if (!names.includes("R")) fail("tensor_missing", "the file has no tensor R");
  const hasWeight = names.includes("head.weight");
  if (hasWeight !== names.includes("head.bias")) {
    fail(
      "head_incomplete",
      `a head needs both head.weight and head.bias; only ${hasWeight ? "head.weight" : "head.bias"} is present`,
    );
  }
  // Checked in file-writer order: R, head.bias, head.weight.
  const present = TENSOR_ORDER.filter((n) => names.includes(n));
  const raw = present.map((name) => {
    const e = header[name];
    const keys = isJsonObject(e) ? Object.keys(e).sort().join(",") : "";
    if (!isJsonObject(e) || keys !== "data_offsets,dtype,shape") {
      fail(
        "tensor_entry_invalid",
        `${name} is ${show(e)}; expected an object with exactly dtype, shape, data_offsets`,
        { tensor: name },
      );
    }
    return { name, e };
  });
  for (const { name, e } of raw) {
    if (!isDtype(e.dtype)) {
      fail(
        "dtype_unsupported",
        `${name} dtype ${show(e.dtype)} is not one of ${DTYPES.join(", ")}`,
        {
          tensor: name,
          value: e.dtype,
          allowed: DTYPES,
        },
      );
    }
  }
  const dtype = (raw[0] as { e: JsonObject }).e.dtype as Dtype;
  for (const { name, e } of raw) {
    if (e.dtype !== dtype) {
      fail("dtype_mixed", `${name} is ${e.dtype} but R is ${dtype}; all tensors share one dtype`, {
        tensor: name,
        value: e.dtype,
        expected: dtype,
      });
    }
  }
  for (const { name, e } of raw) {
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      fail("shape_invalid", `${name} shape ${show(shape)} is not a list of non-negative integers`, {
        tensor: name,
        value: shape,
      });
    }
  }
  const shapeOf = (name: TensorName) =>
    (raw.find((t) => t.name === name)?.e.shape ?? []) as number[];
  const r = shapeOf("R");
  const rExpected = [meta.modules, meta.rank, meta.rank];
  if (r.length !== 3 || r.some((d, i) => d !== rExpected[i])) {
    fail(
      "shape_mismatch",
      `R shape [${r.join(", ")}] is not [modules, rank, rank] = [${rExpected.join(", ")}]`,
      {
        tensor: "R",
        value: r,
        expected: rExpected,
      },
    );
  }
  let classes = 0;
  if (hasWeight) {
    const w = shapeOf("head.weight");
    const b = shapeOf("head.bias");
    const [c = 0, h = 0] = w;
    if (w.length !== 2 || c < 1 || c > MAX_CLASSES || h < 1 || h > MAX_HIDDEN) {
      fail(
        "shape_mismatch",
        `head.weight shape [${w.join(", ")}] is not [classes, hidden] with classes in 1..${MAX_CLASSES} and hidden in 1..${MAX_HIDDEN}`,
        { tensor: "head.weight", value: w, limit: [MAX_CLASSES, MAX_HIDDEN] },
      );
    }
    if (b.length !== 1 || b[0] !== c) {
      fail("shape_mismatch", `head.bias shape [${b.join(", ")}] is not [classes] = [${c}]`, {
        tensor: "head.bias",
        value: b,
        expected: [c],
      });
    }
    classes = c;
  }
  if (meta.labels !== undefined && meta.labels.length !== classes) {
    fail(
      "labels_mismatch",
      hasWeight
        ? `${meta.labels.length} labels for a head of ${classes} classes`
        : `${meta.labels.length} labels but the file has no head`,
      { value: meta.labels.length, expected: classes },
    );
  }
  const entries = raw.map(({ name, e }): Entry => {
    const o = e.data_offsets;
    if (!Array.isArray(o) || o.length !== 2 || !isCount(o[0]) || !isCount(o[1]) || o[0] > o[1]) {
      fail(
        "offsets_invalid",
        `${name} data_offsets ${show(o)} is not [begin, end] of integers with 0 ≤ begin ≤ end`,
        {
          tensor: name,
          value: o,
        },
      );
    }
    return { name, dtype, shape: e.shape as number[], begin: o[0] as number, end: o[1] as number };
  });
  return { entries, dtype };
}

/** Steps 30–35: the byte layout of the data section. */
function checkLayout(entries: Entry[], dataLength: number): void {
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev = "the start of the data";
  for (const t of sorted) {
    if (t.begin < at) {
      fail("offsets_overlap", `${t.name} starts at ${t.begin}, inside ${prev} (ends at ${at})`, {
        tensor: t.name,
        value: t.begin,
        limit: at,
      });
    }
    if (t.begin > at) {
      fail(
        "offsets_gap",
        `${t.name} starts at ${t.begin}, leaving a gap after ${prev} (ends at ${at})`,
        {
          tensor: t.name,
          value: t.begin,
          expected: at,
        },
      );
    }
    at = t.end;
    prev = t.name;
  }
  if (at > dataLength) {
    fail(
      "offsets_out_of_bounds",
      `tensor data ends at ${at}, past the ${dataLength} bytes after the header`,
      {
        value: at,
        limit: dataLength,
      },
    );
  }
  if (at < dataLength) {
    fail("trailing_bytes", `tensor data ends at ${at} but ${dataLength} bytes follow the header`, {
      value: dataLength - at,
      expected: at,
    });
  }
  for (const t of entries) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    const expected = count * DTYPE_BYTES[t.dtype];
    if (t.end - t.begin !== expected) {
      fail(
        "tensor_size_mismatch",
        `${t.name} spans ${t.end - t.begin} bytes; shape [${t.shape.join(", ")}] of ${t.dtype} needs ${expected}`,
        { tensor: t.name, value: t.end - t.begin, expected },
      );
    }
  }
}

/** A view of `length` elements of `bytes` at `offset` as `Ctor`, copying only if unaligned. */
function aligned<T extends Uint16Array | Uint32Array>(
  Ctor: { new (buffer: ArrayBuffer, offset: number, length: number): T; BYTES_PER_ELEMENT: number },
  bytes: Uint8Array,
  offset: number,
  length: number,
): T {
  const at = bytes.byteOffset + offset;
  if (at % Ctor.BYTES_PER_ELEMENT === 0) return new Ctor(bytes.buffer as ArrayBuffer, at, length);
  const copy = bytes.slice(offset, offset + length * Ctor.BYTES_PER_ELEMENT);
  return new Ctor(copy.buffer, 0, length);
}

/** F16 -> float32 through the 65536-entry table; the first non-finite index, or -1. */
function widenF16(src: Uint16Array, out: Float32Array): number {
  const table = new Float32Array(f16ToF32Table().buffer);
  const n = src.length;
  for (let i = 0; i < n; i++) {
    const h = src[i] as number;
    if ((h & 0x7c00) === 0x7c00) return i;
    out[i] = table[h] as number;
  }
  return -1;
}

/** BF16 -> float32 (the top half of the bits); the first non-finite index, or -1. */
function widenBf16(src: Uint16Array, bits: Uint32Array): number {
  const n = src.length;
  for (let i = 0; i < n; i++) {
    const h = src[i] as number;
    if ((h & 0x7f80) === 0x7f80) return i;
    bits[i] = h << 16;
  }
  return -1;
}

/** Copies F32 bits; the first non-finite index, or -1. */
function copyF32(src: Uint32Array, bits: Uint32Array): number {
  const n = src.length;
  for (let i = 0; i < n; i++) {
    if (((src[i] as number) & 0x7f800000) === 0x7f800000) return i;
  }
  bits.set(src);
  return -1;
}

/** Step 36: widen to float32, stopping at the first non-finite value. */
function readTensor(bytes: Uint8Array, offset: number, t: Entry): Float32Array {
  const n = (t.end - t.begin) / DTYPE_BYTES[t.dtype];
  const out = new Float32Array(n);
  const bits = new Uint32Array(out.buffer);
  let bad = -1;
  let raw = 0;
  if (HOST_LITTLE_ENDIAN) {
    if (t.dtype === "F32") {
      const src = aligned(Uint32Array, bytes, offset, n);
      bad = copyF32(src, bits);
      raw = bad >= 0 ? (src[bad] as number) : 0;
    } else {
      const src = aligned(Uint16Array, bytes, offset, n);
      bad = t.dtype === "F16" ? widenF16(src, out) : widenBf16(src, bits);
      raw = bad >= 0 ? (src[bad] as number) : 0;
    }
  } else {
    const view = new DataView(bytes.buffer, bytes.byteOffset + offset, n * DTYPE_BYTES[t.dtype]);
    for (let i = 0; i < n && bad < 0; i++) {
      raw = t.dtype === "F32" ? view.getUint32(4 * i, true) : view.getUint16(2 * i, true);
      bits[i] =
        t.dtype === "F32"
          ? raw
          : t.dtype === "F16"
            ? f16BitsToF32Bits(raw)
            : bf16BitsToF32Bits(raw);
      if (((bits[i] as number) & 0x7f800000) === 0x7f800000) bad = i;
    }
  }
  if (bad >= 0) {
    const value = String(
      f32FromBits(
        t.dtype === "F32"
          ? raw
          : t.dtype === "F16"
            ? f16BitsToF32Bits(raw)
            : bf16BitsToF32Bits(raw),
      ),
    );
    fail("value_not_finite", `${t.name}[${bad}] is ${value}; adapters hold finite values only`, {
      tensor: t.name,
      index: bad,
      value,
    });
  }
  return out;
}

/** Steps 37–41: the adapter against what the model says. */
function checkExpectations(a: Adapter, expect: AdapterExpectations): void {
  const pairs = [
    ["model_mismatch", "model", a.model, expect.model],
    ["factors_mismatch", "factors", a.factors, expect.factors],
    ["rank_mismatch", "rank", a.rank, expect.rank],
    ["modules_mismatch", "modules", a.modules, expect.modules],
  ] as const;
  for (const [code, key, got, want] of pairs) {
    if (want !== undefined && got !== want) {
      fail(code, `${key} ${show(got)} does not match the model's ${show(want)}`, {
        value: got,
        expected: want,
      });
    }
  }
  if (expect.hidden !== undefined && a.head !== undefined && a.head.hidden !== expect.hidden) {
    fail(
      "hidden_mismatch",
      `head hidden size ${a.head.hidden} does not match the model's ${expect.hidden}`,
      {
        value: a.head.hidden,
        expected: expect.hidden,
      },
    );
  }
}

/**
 * Decodes and fully validates an adapter file. Throws AdapterFormatError (never anything
 * else) with the first failed check's code.
 */
export function decodeAdapter(bytes: Uint8Array, expect: AdapterExpectations = {}): Adapter {
  try {
    if (!(bytes instanceof Uint8Array)) {
      fail("file_too_small", `expected a Uint8Array, got ${typeof bytes}`, { value: typeof bytes });
    }
    const { header, dataStart } = readHeader(bytes);
    const meta = readMetadata(header);
    const { entries, dtype } = readEntries(header, meta);
    checkLayout(entries, bytes.length - dataStart);
    const data = new Map<TensorName, Float32Array>();
    for (const t of entries) data.set(t.name, readTensor(bytes, dataStart + t.begin, t));
    const adapter: Adapter = {
      model: meta.model,
      factors: meta.factors,
      rank: meta.rank,
      modules: meta.modules,
      dtype,
      R: data.get("R") as Float32Array,
      metadata: meta.metadata,
      bytes: bytes.length,
    };
    const weight = entries.find((t) => t.name === "head.weight");
    if (weight !== undefined) {
      const head: AdapterHead = {
        weight: data.get("head.weight") as Float32Array,
        bias: data.get("head.bias") as Float32Array,
        classes: weight.shape[0] as number,
        hidden: weight.shape[1] as number,
      };
      if (meta.labels !== undefined) head.labels = meta.labels;
      adapter.head = head;
    }
    checkExpectations(adapter, expect);
    return adapter;
  } catch (e) {
    if (e instanceof AdapterFormatError) throw e;
    // A bug here must still surface as the one error type callers handle.
    throw new AdapterFormatError("header_invalid_json", `unexpected failure: ${String(e)}`);
  }
}
