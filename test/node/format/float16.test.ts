import { describe, expect, it } from "vitest";
import * as half from "../../../src/format/index.ts";

const hex = (n: number) => `0x${n.toString(16).padStart(4, "0")}`;

describe("binary16", () => {
  it.each([
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff], // largest finite half
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -24 * 1023, 0x03ff], // largest subnormal
    [Number.POSITIVE_INFINITY, 0x7c00],
    [Number.NEGATIVE_INFINITY, 0xfc00],
    [1 / 3, 0x3555],
  ])("encodes %s as %s", (x, bits) => {
    expect(hex(half.toF16(x))).toBe(hex(bits));
  });

  it("rounds ties to even", () => {
    expect(hex(half.toF16(1 + 2 ** -11))).toBe(hex(0x3c00)); // halfway 1 and 1+2^-10: even is 1
    expect(hex(half.toF16(1 + 3 * 2 ** -11))).toBe(hex(0x3c02)); // halfway, odd below: up
    expect(hex(half.toF16(2049))).toBe(hex(0x6800)); // 2048
    expect(hex(half.toF16(2051))).toBe(hex(0x6802)); // 2052
    expect(hex(half.toF16(2 ** -25))).toBe(hex(0x0000)); // half the smallest subnormal: to 0
    expect(hex(half.toF16(3 * 2 ** -25))).toBe(hex(0x0002)); // 1.5 subnormal units: to 2
    expect(hex(half.toF16(-(2 ** -25)))).toBe(hex(0x8000)); // keeps the sign
  });

  it("rounds just above and below a tie the nearer way", () => {
    expect(half.toF16(Math.fround(1 + 2 ** -11 + 2 ** -20))).toBe(0x3c01);
    expect(half.toF16(Math.fround(2 ** -25 + 2 ** -40))).toBe(0x0001);
    expect(half.toF16(Math.fround(2 ** -14 - 2 ** -30))).toBe(0x0400); // rounds up into the normals
  });

  it("overflows to infinity at 65520 and not below", () => {
    expect(half.toF16(65519.99)).toBe(0x7bff);
    expect(half.toF16(65520)).toBe(0x7c00);
    expect(half.toF16(-1e6)).toBe(0xfc00);
  });

  it("keeps NaN a NaN", () => {
    const h = half.toF16(Number.NaN);
    expect(h & 0x7c00).toBe(0x7c00);
    expect(h & 0x3ff).not.toBe(0);
    expect(half.fromF16(0x7e00)).toBeNaN();
  });

  it("decodes every half exactly and re-encodes it to the same bits", () => {
    for (let h = 0; h < 65536; h++) {
      const x = half.fromF16(h);
      if (Number.isNaN(x)) continue;
      expect(half.f32BitsToF16(half.f16BitsToF32Bits(h))).toBe(h);
    }
    expect(half.fromF16(0x0001)).toBe(2 ** -24);
    expect(half.fromF16(0x03ff)).toBe(1023 * 2 ** -24);
    expect(Object.is(half.fromF16(0x8000), -0)).toBe(true);
    expect(half.fromF16(0x7c00)).toBe(Number.POSITIVE_INFINITY);
  });

  it("matches the nearest half on random floats (brute force over neighbours)", () => {
    let seed = 12345;
    for (let i = 0; i < 20000; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const x = Math.fround(((seed / 2 ** 32) * 2 - 1) * 2 ** ((i % 40) - 26));
      const h = half.toF16(x);
      const y = half.fromF16(h);
      // No other half is nearer; ties went to the even one.
      for (const n of [h - 1, h + 1]) {
        if (n < 0 || n > 0xffff || (n & 0x7fff) >= 0x7c00 || (n ^ h) & 0x8000) continue;
        const d = Math.abs(half.fromF16(n) - x);
        expect(d >= Math.abs(y - x)).toBe(true);
        if (d === Math.abs(y - x)) expect(h & 1).toBe(0);
      }
    }
  });
});

describe("bfloat16", () => {
  it.each([
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3f80],
    [1 + 2 ** -8, 0x3f80], // tie: even
    [1 + 3 * 2 ** -8, 0x3f82], // tie: odd below, up
    [3.4028234663852886e38, 0x7f80], // float32 max rounds past bf16 max
    [Number.NEGATIVE_INFINITY, 0xff80],
    [2 ** -133, 0x0001], // smallest bf16 subnormal
  ])("encodes %s as %s", (x, bits) => {
    expect(hex(half.toBf16(x))).toBe(hex(bits));
  });

  it("is the top half of float32", () => {
    expect(half.bf16BitsToF32Bits(0x3f80)).toBe(0x3f800000);
    expect(half.fromBf16(0xc000)).toBe(-2);
    expect(half.fromBf16(half.toBf16(Number.NaN))).toBeNaN();
    expect(half.f32BitsToBf16(0x7fc00000)).toBe(0x7fc0);
  });
});

describe("half.f32ArrayToF16 (the writer's table-driven loop)", () => {
  it("agrees with half.f32BitsToF16 on every exponent, sign and edge mantissa, and on random bits", () => {
    const mantissas = [0, 1, 0xfff, 0x1000, 0x1001, 0x2000, 0x3000, 0x7fefff, 0x7ff000, 0x7fffff];
    const src: number[] = [];
    for (let i = 0; i < 512; i++) {
      for (const m of mantissas) src.push(((i << 23) | m) >>> 0);
      for (let k = 0; k < 64; k++) src.push(((i << 23) | ((k * 0x1f3a7b) & 0x7fffff)) >>> 0);
    }
    let seed = 7;
    for (let k = 0; k < 200_000; k++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      src.push(seed);
    }
    const finite = src.filter((x) => {
      const h = half.f32BitsToF16(x);
      return (x & 0x7f800000) !== 0x7f800000 && (h & 0x7c00) !== 0x7c00;
    });
    const dst = new Uint16Array(finite.length);
    expect(half.f32ArrayToF16(new Uint32Array(finite), dst)).toBe(-1);
    const mismatches = finite.filter((x, i) => half.f32BitsToF16(x) !== dst[i]);
    expect(mismatches).toEqual([]);
    expect(finite.length).toBeGreaterThan(100_000);
  });

  it("stops at the first value that is not finite or overflows", () => {
    const bits = (xs: number[]) => new Uint32Array(new Float32Array(xs).buffer);
    expect(half.f32ArrayToF16(bits([1, 2, 65504, 65520, 3]), new Uint16Array(5))).toBe(3);
    expect(half.f32ArrayToF16(bits([1, Number.NaN]), new Uint16Array(2))).toBe(1);
    expect(half.f32ArrayToF16(bits([-Number.POSITIVE_INFINITY]), new Uint16Array(1))).toBe(0);
    expect(half.f32ArrayToF16(bits([-65519, 2 ** -25, -(2 ** -24)]), new Uint16Array(3))).toBe(-1);
  });
});
