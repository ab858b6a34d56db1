// IEEE binary16 and bfloat16 <-> binary32 by bit manipulation: no allocation per element,
// round-to-nearest-even when narrowing (the rounding of numpy's astype and ml_dtypes).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bits of `x` rounded to float32. */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0] as number;
}

/** The float32 whose bits are `bits`. */
export function f32FromBits(bits: number): number {
  u32[0] = bits;
  return f32[0] as number;
}

/** float32 bits -> binary16 bits, round to nearest even; NaN stays NaN, overflow gives ±Inf. */
export function f32BitsToF16(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const a = x & 0x7fffffff;
  if (a >= 0x7f800000) {
    // Inf, or NaN with its top payload bits kept and the quiet bit set.
    return a === 0x7f800000 ? sign | 0x7c00 : sign | 0x7e00 | ((a >>> 13) & 0x3ff);
  }
  if (a >= 0x477ff000) return sign | 0x7c00; // ≥ 65520 rounds past 65504 (max half) to Inf
  if (a >= 0x38800000) {
    // Normal half: rebias the exponent (127 -> 15) and round the 13 dropped bits to even.
    const r = a - 0x38000000;
    return sign | ((r + 0xfff + ((r >>> 13) & 1)) >>> 13);
  }
  if (a <= 0x33000000) return sign; // ≤ 2^-25 (half the smallest subnormal) rounds to ±0
  // Subnormal half: value = m · 2^(e-150); in units of 2^-24 that is m >> (126 - e).
  const e = a >>> 23;
  const m = (a & 0x7fffff) | 0x800000;
  const shift = 126 - e;
  const q = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return sign | (q + (rem > half || (rem === half && (q & 1) === 1) ? 1 : 0));
}

/** binary16 bits -> float32 bits (exact). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (man << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (man << 13)) >>> 0;
  if (man === 0) return sign >>> 0;
  // Subnormal: normalise the mantissa.
  let e = 113;
  let m = man;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

/** float32 bits -> bfloat16 bits, round to nearest even; NaN stays NaN, overflow gives ±Inf. */
export function f32BitsToBf16(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) & 0xffff) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits -> float32 bits (exact). */
export function bf16BitsToF32Bits(b: number): number {
  return (b << 16) >>> 0;
}

/** Number -> binary16 bits (via float32, as numpy does for a float32 array). */
export function toF16(x: number): number {
  return f32BitsToF16(f32Bits(x));
}

/** binary16 bits -> number. */
export function fromF16(h: number): number {
  return f32FromBits(f16BitsToF32Bits(h));
}

/** Number -> bfloat16 bits (via float32). */
export function toBf16(x: number): number {
  return f32BitsToBf16(f32Bits(x));
}

/** bfloat16 bits -> number. */
export function fromBf16(b: number): number {
  return f32FromBits(bf16BitsToF32Bits(b));
}

let f16Table: Uint32Array | undefined;

/** All 65536 binary16 values as float32 bits, built once (256 KiB) for table-driven decoding. */
export function f16ToF32Table(): Uint32Array {
  if (f16Table === undefined) {
    const t = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = f16BitsToF32Bits(h);
    f16Table = t;
  }
  return f16Table;
}

// Table-driven float32 -> binary16 for whole arrays, indexed by sign and exponent (9 bits):
// h = BASE + ((m + ROUND + ((m >>> SHIFT) & 1)) >>> SHIFT) is round-to-nearest-even for
// normals (SHIFT 13; a mantissa carry bumps the exponent), subnormals (the implicit bit made
// explicit, SHIFT 14..24) and underflow to ±0; it gives ±Inf for overflow, Inf and NaN alike.
const BASE = new Uint16Array(512);
const SHIFT = new Uint8Array(512);
const IMPLICIT = new Uint32Array(512);
const ROUND = new Uint32Array(512);
for (let i = 0; i < 512; i++) {
  const e = i & 0xff;
  const sign = (i & 0x100) << 7;
  let base: number;
  let shift: number;
  let implicit = 0;
  if (e >= 143) {
    base = sign | 0x7c00; // ≥ 2^16, Inf, NaN
    shift = 31;
  } else if (e >= 113) {
    base = sign | ((e - 112) << 10); // normal half
    shift = 13;
  } else if (e >= 102) {
    base = sign; // subnormal half
    shift = 126 - e;
    implicit = 0x800000;
  } else {
    base = sign; // below 2^-25: ±0
    shift = 31;
  }
  BASE[i] = base;
  SHIFT[i] = shift;
  IMPLICIT[i] = implicit;
  ROUND[i] = 2 ** (shift - 1) - 1;
}

/**
 * float32 bits -> binary16 bits for a whole array (the same rounding as f32BitsToF16).
 * Stops at the first input that is not finite or overflows binary16 and returns its index;
 * -1 when every value was written.
 */
export function f32ArrayToF16(src: Uint32Array, dst: Uint16Array): number {
  const n = src.length;
  for (let i = 0; i < n; i++) {
    const x = src[i] as number;
    const e = x >>> 23;
    const s = SHIFT[e] as number;
    const m = (x & 0x7fffff) | (IMPLICIT[e] as number);
    const h = (BASE[e] as number) + ((m + (ROUND[e] as number) + ((m >>> s) & 1)) >>> s);
    if ((h & 0x7c00) === 0x7c00) return i;
    dst[i] = h;
  }
  return -1;
}
