// A reader and writer for generic safetensors files (factor files, PEFT adapters). Adapters
// themselves go through src/format, which applies the adapter contract; this module only
// applies the container rules, so the CLI can read any tensor set a tool wrote.

import { fromBf16, fromF16 } from "../format/index.ts";
import { InvalidInputError } from "./errors.ts";

/** Largest JSON header read: the official reader's own limit (100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Alignment writers pad the header to, as the official writer does. */
const HEADER_ALIGNMENT = 8;

const ELEMENT_BYTES: Readonly<Record<string, number>> = { F64: 8, F32: 4, F16: 2, BF16: 2 };

export interface TensorView {
  name: string;
  dtype: string;
  shape: number[];
  /** The raw little-endian bytes of the tensor (a view into the file). */
  bytes: Uint8Array;
}

export interface SafetensorsFile {
  metadata: Record<string, string>;
  /** Tensors in the order of the header. */
  tensors: Map<string, TensorView>;
  headerBytes: number;
}

/** Parses a safetensors container; `label` (a path) names the file in every error. */
export function readSafetensors(bytes: Uint8Array, label: string): SafetensorsFile {
  const bad = (why: string): never => {
    throw new InvalidInputError(`${label}: not a valid safetensors file: ${why}`);
  };
  if (bytes.length < 8) bad(`${bytes.length} bytes; a safetensors file has at least 8`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > bytes.length) {
    bad(
      `header length ${headerLength} exceeds the file (${bytes.length} bytes) or the limit ${MAX_HEADER_BYTES}`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLength)),
    );
  } catch (error) {
    bad(`header is not UTF-8 JSON (${(error as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header))
    bad("header is not a JSON object");
  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorView>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      for (const [k, v] of Object.entries((entry ?? {}) as Record<string, unknown>)) {
        if (typeof v !== "string") bad(`__metadata__.${k} is ${JSON.stringify(v)}, not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = String(e?.dtype);
    const size = ELEMENT_BYTES[dtype];
    if (size === undefined) {
      bad(
        `tensor ${name} has dtype ${JSON.stringify(e?.dtype)}; supported: ${Object.keys(ELEMENT_BYTES).join(", ")}`,
      );
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(`tensor ${name} has shape ${JSON.stringify(shape)}; expected non-negative integers`);
    }
    const offsets = e.data_offsets;
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o)) ||
      offsets[0] < 0 ||
      offsets[1] < offsets[0] ||
      offsets[1] > dataLength
    ) {
      bad(
        `tensor ${name} has data_offsets ${JSON.stringify(offsets)}; the data section has ${dataLength} bytes`,
      );
    }
    const [begin, end] = offsets as [number, number];
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    if (elements * (size as number) !== end - begin) {
      bad(
        `tensor ${name}: shape ${JSON.stringify(shape)} × ${dtype} needs ${elements * (size as number)} bytes; offsets span ${end - begin}`,
      );
    }
    tensors.set(name, {
      name,
      dtype,
      shape: shape as number[],
      bytes: bytes.subarray(dataStart + begin, dataStart + end),
    });
  }
  return { metadata, tensors, headerBytes: headerLength };
}

/** The tensor's values as float64, whatever its stored float type. */
export function toFloat64(t: TensorView): Float64Array {
  const n = t.bytes.length / (ELEMENT_BYTES[t.dtype] as number);
  const out = new Float64Array(n);
  const view = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  if (t.dtype === "F32") for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
  else if (t.dtype === "F64") for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
  else if (t.dtype === "F16")
    for (let i = 0; i < n; i++) out[i] = fromF16(view.getUint16(i * 2, true));
  else for (let i = 0; i < n; i++) out[i] = fromBf16(view.getUint16(i * 2, true));
  return out;
}

/** A tensor to write: values are stored as F32 (rounded to nearest). */
export interface F32Tensor {
  name: string;
  shape: number[];
  values: ArrayLike<number>;
}

/** Writes a safetensors file with F32 tensors in the given order and string metadata. */
export function encodeSafetensorsF32(
  tensors: readonly F32Tensor[],
  metadata: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const expected = t.shape.reduce((a, b) => a * b, 1);
    if (expected !== t.values.length) {
      throw new Error(
        `tensor ${t.name}: shape ${JSON.stringify(t.shape)} needs ${expected} values; got ${t.values.length}`,
      );
    }
    header[t.name] = {
      dtype: "F32",
      shape: t.shape,
      data_offsets: [offset, offset + expected * 4],
    };
    offset += expected * 4;
  }
  let json = JSON.stringify(header);
  const encoder = new TextEncoder();
  const pad =
    (HEADER_ALIGNMENT - ((8 + encoder.encode(json).length) % HEADER_ALIGNMENT)) % HEADER_ALIGNMENT;
  json += " ".repeat(pad);
  const headerBytes = encoder.encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of tensors) {
    for (let i = 0; i < t.values.length; i++, at += 4)
      view.setFloat32(at, t.values[i] as number, true);
  }
  return out;
}
