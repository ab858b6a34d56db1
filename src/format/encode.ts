// The writer: checks its input with the reader's rules, then lays out one safetensors file.

import { DEFAULT_DTYPE, DTYPE_BYTES, type Dtype, HOST_LITTLE_ENDIAN, isDtype } from "./dtype.ts";
import { fail } from "./errors.ts";
import { f32ArrayToF16, f32BitsToBf16, f32BitsToF16 } from "./float16.ts";
import { buildHeaderJson, type TensorEntry } from "./header.ts";
import {
  HEADER_PREFIX_BYTES,
  MAX_ADAPTER_BYTES,
  MAX_CLASSES,
  MAX_HEADER_BYTES,
  MAX_HIDDEN,
} from "./limits.ts";
import {
  checkFactors,
  checkLabels,
  checkModel,
  checkModules,
  checkOptional,
  checkRank,
  FORMAT,
  FORMAT_VERSION,
  OPTIONAL_KEYS,
  type OptionalKey,
} from "./metadata.ts";
import type { AdapterInput, EncodeOptions } from "./types.ts";

function checkLength(name: string, data: unknown, expected: number, shape: number[]): Float32Array {
  if (!(data instanceof Float32Array) || data.length !== expected) {
    const got = data instanceof Float32Array ? data.length : typeof data;
    fail(
      "shape_mismatch",
      `${name} has ${got} values; shape [${shape.join(", ")}] needs ${expected}`,
      {
        tensor: name,
        value: got,
        expected,
      },
    );
  }
  return data;
}

function checkDim(name: string, value: unknown, limit: number): number {
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > limit) {
    fail("shape_mismatch", `${name} ${String(value)} is not an integer in 1..${limit}`, {
      value,
      limit,
    });
  }
  return value as number;
}

/** Writes `src` as `dtype` into `out` at `offset`; throws on a value the dtype cannot hold. */
function writeTensor(
  name: string,
  src: Float32Array,
  dtype: Dtype,
  out: Uint8Array,
  offset: number,
) {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const n = src.length;
  const bad = (i: number, code: "value_not_finite" | "value_out_of_range") =>
    fail(
      code,
      code === "value_not_finite"
        ? `${name}[${i}] is ${src[i]}; adapters hold finite values only`
        : `${name}[${i}] = ${src[i]} overflows ${dtype} (it would be stored as Infinity)`,
      { tensor: name, index: i, value: src[i], dtype },
    );
  if (dtype === "F32") {
    for (let i = 0; i < n; i++) {
      if (((bits[i] as number) & 0x7f800000) === 0x7f800000) bad(i, "value_not_finite");
    }
    if (HOST_LITTLE_ENDIAN) out.set(new Uint8Array(src.buffer, src.byteOffset, n * 4), offset);
    else {
      const view = new DataView(out.buffer, out.byteOffset);
      for (let i = 0; i < n; i++) view.setUint32(offset + 4 * i, bits[i] as number, true);
    }
    return;
  }
  // The data start is 8-byte aligned in a buffer we allocated, so a Uint16Array view is valid.
  if (HOST_LITTLE_ENDIAN) {
    const dst = new Uint16Array(out.buffer, out.byteOffset + offset, n);
    const i = dtype === "F16" ? f32ArrayToF16(bits, dst) : narrowBf16(bits, dst);
    if (i >= 0)
      bad(
        i,
        ((bits[i] as number) & 0x7f800000) === 0x7f800000
          ? "value_not_finite"
          : "value_out_of_range",
      );
    return;
  }
  const view = new DataView(out.buffer, out.byteOffset);
  for (let i = 0; i < n; i++) {
    const x = bits[i] as number;
    if ((x & 0x7f800000) === 0x7f800000) bad(i, "value_not_finite");
    const h = dtype === "F16" ? f32BitsToF16(x) : f32BitsToBf16(x);
    if ((h & 0x7fff) === (dtype === "F16" ? 0x7c00 : 0x7f80)) bad(i, "value_out_of_range");
    view.setUint16(offset + 2 * i, h, true);
  }
}

/** float32 bits -> BF16 into `dst`; the first index that is non-finite or overflows, or -1. */
function narrowBf16(src: Uint32Array, dst: Uint16Array): number {
  const n = src.length;
  for (let i = 0; i < n; i++) {
    const h = f32BitsToBf16(src[i] as number);
    if ((h & 0x7f80) === 0x7f80) return i;
    dst[i] = h;
  }
  return -1;
}

/** Encodes an adapter as a safetensors file (docs/adapter-format.md). */
export function encodeAdapter(input: AdapterInput, options: EncodeOptions = {}): Uint8Array {
  const dtype = options.dtype ?? DEFAULT_DTYPE;
  if (!isDtype(dtype)) {
    fail("dtype_unsupported", `dtype ${JSON.stringify(dtype)} is not one of F16, F32, BF16`, {
      value: dtype,
      allowed: ["F16", "F32", "BF16"],
    });
  }
  const model = checkModel(input.model);
  const factors = checkFactors(input.factors);
  const rank = checkRank(input.rank);
  const modules = checkModules(input.modules);
  const metadata: [string, string][] = [
    ["format", FORMAT],
    ["format_version", FORMAT_VERSION],
    ["model", model],
    ["factors", factors],
    ["rank", String(rank)],
    ["modules", String(modules)],
  ];
  const head = input.head;
  if (head?.labels !== undefined) {
    metadata.push(["labels", JSON.stringify(checkLabels(head.labels))]);
  }
  const extra = input.metadata ?? {};
  const unknown = Object.keys(extra).filter(
    (k) => !(OPTIONAL_KEYS as readonly string[]).includes(k),
  );
  if (unknown.length > 0) {
    fail(
      "metadata_key_unknown",
      `metadata keys ${unknown.sort().join(", ")} are not allowed; allowed: ${OPTIONAL_KEYS.join(", ")}`,
      { value: unknown, allowed: OPTIONAL_KEYS },
    );
  }
  for (const key of OPTIONAL_KEYS) {
    if (Object.hasOwn(extra, key))
      metadata.push([key, checkOptional(key as OptionalKey, extra[key])]);
  }

  const rShape = [modules, rank, rank];
  const tensors: [TensorEntry["name"], Float32Array, number[]][] = [
    ["R", checkLength("R", input.R, modules * rank * rank, rShape), rShape],
  ];
  if (head !== undefined) {
    const classes = checkDim("head classes", head.classes, MAX_CLASSES);
    const hidden = checkDim("head hidden", head.hidden, MAX_HIDDEN);
    if (head.labels !== undefined && head.labels.length !== classes) {
      fail("labels_mismatch", `${head.labels.length} labels for ${classes} classes`, {
        value: head.labels.length,
        expected: classes,
      });
    }
    tensors.push(["head.bias", checkLength("head.bias", head.bias, classes, [classes]), [classes]]);
    tensors.push([
      "head.weight",
      checkLength("head.weight", head.weight, classes * hidden, [classes, hidden]),
      [classes, hidden],
    ]);
  }

  const size = DTYPE_BYTES[dtype];
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (const [name, data, shape] of tensors) {
    entries.push({ name, dtype, shape, begin: offset, end: offset + data.length * size });
    offset += data.length * size;
  }
  const header = new TextEncoder().encode(buildHeaderJson(metadata, entries));
  if (header.length > MAX_HEADER_BYTES) {
    // Only labels and a note full of quotes and backslashes get here (escaped twice).
    fail(
      "header_too_large",
      `the header would be ${header.length} bytes; limit ${MAX_HEADER_BYTES}`,
      {
        value: header.length,
        limit: MAX_HEADER_BYTES,
      },
    );
  }
  const total = HEADER_PREFIX_BYTES + header.length + offset;
  if (total > MAX_ADAPTER_BYTES) {
    fail("file_too_large", `the adapter would be ${total} bytes; limit ${MAX_ADAPTER_BYTES}`, {
      value: total,
      limit: MAX_ADAPTER_BYTES,
    });
  }
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, header.length, true);
  view.setUint32(4, 0, true);
  out.set(header, HEADER_PREFIX_BYTES);
  const dataStart = HEADER_PREFIX_BYTES + header.length;
  for (const [i, [name, data]] of tensors.entries()) {
    writeTensor(name, data, dtype, out, dataStart + (entries[i] as TensorEntry).begin);
  }
  return out;
}
