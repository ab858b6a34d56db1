import { DTYPE_BYTES, HOST_LITTLE_ENDIAN } from "./dtype.ts";
import type { Entry } from "./entry.ts";
import { fail } from "./errors.ts";
import { bf16BitsToF32Bits, f16BitsToF32Bits, f16ToF32Table, f32FromBits } from "./float16.ts";

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

/** Check 35: widen to a new Float32Array, stopping at the first non-finite value. */
export function readTensor(bytes: Uint8Array, offset: number, t: Entry): Float32Array {
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
