import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  ADAPTER_ERROR_CODES,
  AdapterFormatError,
  decodeAdapter,
  encodeAdapter,
  sha256Hex,
} from "../../../src/format/index.ts";
import { bitsOf, bytesOf, cases, inputOf } from "./fixtures.ts";

function verdict(bytes: Uint8Array, expect: object) {
  try {
    return { verdict: "valid", adapter: decodeAdapter(bytes, expect) } as const;
  } catch (e) {
    if (!(e instanceof AdapterFormatError)) throw e;
    return { verdict: "invalid", code: e.code, message: e.message } as const;
  }
}

describe("every fixture in expected.json", () => {
  it("has a sane set of cases", () => {
    expect(cases.length).toBeGreaterThan(60);
    expect(cases.filter((c) => c.verdict === "valid" && c.writer === "py").length).toBeGreaterThan(
      0,
    );
    expect(cases.filter((c) => c.verdict === "valid" && c.writer === "ts").length).toBeGreaterThan(
      0,
    );
  });

  it("covers every reader error code with at least one fixture", () => {
    const covered = new Set(cases.map((c) => c.code));
    const readerCodes = ADAPTER_ERROR_CODES.filter((c) => c !== "value_out_of_range");
    expect(readerCodes.filter((c) => !covered.has(c))).toEqual([]);
  });

  for (const c of cases) {
    it(`${c.name}: ${c.verdict}${c.code ? ` (${c.code})` : ""}`, () => {
      const bytes = bytesOf(c);
      const got = verdict(bytes, c.expect);
      if (c.verdict === "invalid") {
        expect(got).toMatchObject({ verdict: "invalid", code: c.code });
        return;
      }
      expect(got.verdict, got.verdict === "invalid" ? got.message : "").toBe("valid");
      const a = got.verdict === "valid" ? got.adapter : undefined;
      if (a === undefined || c.decoded === undefined || c.bits === undefined)
        throw new Error("bad case");
      expect(a).toMatchObject({
        model: c.decoded.model,
        factors: c.decoded.factors,
        rank: c.decoded.rank,
        modules: c.decoded.modules,
        dtype: c.decoded.dtype,
        bytes: bytes.length,
      });
      expect(bitsOf(a.R)).toEqual(c.bits.R);
      if (c.decoded.classes === null) expect(a.head).toBeUndefined();
      else {
        expect(a.head?.classes).toBe(c.decoded.classes);
        expect(a.head?.hidden).toBe(c.decoded.hidden);
        expect(a.head?.labels ?? null).toEqual(c.decoded.labels);
        expect(bitsOf(a.head?.weight as Float32Array)).toEqual(c.bits["head.weight"]);
        expect(bitsOf(a.head?.bias as Float32Array)).toEqual(c.bits["head.bias"]);
      }
      const h = createHash("sha256");
      for (const x of [a.R, a.head?.bias, a.head?.weight]) {
        if (x !== undefined) h.update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
      }
      expect(h.digest("hex")).toBe(c.sha256_f32);
    });
  }
});

describe("bit-exact writing", () => {
  const canonical = cases.filter((c) => c.verdict === "valid" && c.canonical === true);

  for (const c of canonical) {
    it(`encodeAdapter reproduces ${c.file} (written by ${c.writer}) byte for byte`, () => {
      if (c.input === undefined) throw new Error("no input");
      const bytes = encodeAdapter(inputOf(c.input), { dtype: c.input.dtype });
      expect(Buffer.from(bytes).equals(Buffer.from(bytesOf(c)))).toBe(true);
    });
  }

  it("pads the header with spaces to a multiple of 8 and ends at the last tensor", () => {
    for (const c of canonical) {
      const b = bytesOf(c);
      const n = new DataView(b.buffer, b.byteOffset).getUint32(0, true);
      expect(n % 8).toBe(0);
      const header = new TextDecoder().decode(b.subarray(8, 8 + n));
      expect(header.startsWith('{"__metadata__":{"format":"loraxs","format_version":"1",')).toBe(
        true,
      );
      expect(header.trimEnd().endsWith("}")).toBe(true);
      expect(/^ *$/.test(header.slice(header.trimEnd().length))).toBe(true);
    }
  });

  it("sha256Hex matches node:crypto", async () => {
    const b = bytesOf(canonical[0] as (typeof canonical)[0]);
    expect(await sha256Hex(b)).toBe(createHash("sha256").update(b).digest("hex"));
  });
});
