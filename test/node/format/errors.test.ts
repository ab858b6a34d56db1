import { describe, expect, it } from "vitest";
import {
  AdapterFormatError,
  type AdapterInput,
  decodeAdapter,
  encodeAdapter,
  MAX_HEADER_BYTES,
  MAX_RANK,
  validateAdapterBytes,
} from "../../../src/format/index.ts";
import { bytesOf, cases } from "./fixtures.ts";

const base: AdapterInput = {
  model: "tiny-llama",
  factors: `sha256:${"ab".repeat(32)}`,
  rank: 2,
  modules: 1,
  R: new Float32Array([1, -2, 0.5, 0.1]),
};

function codeOf(fn: () => unknown): {
  code: string;
  message: string;
  detail?: Record<string, unknown>;
} {
  try {
    fn();
  } catch (e) {
    if (e instanceof AdapterFormatError)
      return { code: e.code, message: e.message, detail: e.detail };
    throw e;
  }
  throw new Error("expected an AdapterFormatError");
}

const fixture = (name: string) => {
  const c = cases.find((x) => x.name === name);
  if (c === undefined) throw new Error(`no fixture ${name}`);
  return bytesOf(c);
};

describe("reader messages name the offending value and the limit", () => {
  it.each([
    ["header-too-large", ["65537", String(MAX_HEADER_BYTES)]],
    ["header-past-buffer", ["1000", "200"]],
    ["format-unknown", ['"peft"', '"loraxs"']],
    ["rank-over-limit", ['"257"', String(MAX_RANK)]],
    ["shape-mismatch", ["[4, 4, 2]", "[2, 4, 4]"]],
    ["offsets-gap", ["18", "16"]],
    ["tensor-size-mismatch", ["62", "64"]],
    ["value-nan", ["R[5]", "NaN"]],
    ["value-neg-inf", ["R[31]", "-Infinity"]],
  ])("%s", (name, parts) => {
    const { message } = codeOf(() => decodeAdapter(fixture(name)));
    for (const p of parts) expect(message).toContain(p);
  });

  it("reports the first non-finite index in detail", () => {
    expect(codeOf(() => decodeAdapter(fixture("value-inf"))).detail).toMatchObject({
      tensor: "R",
      index: 3,
      value: "Infinity",
    });
  });

  it("reports expectation mismatches with both values", () => {
    const c = cases.find((x) => x.name === "rank-mismatch");
    const { code, detail } = codeOf(() => decodeAdapter(fixture("ts-f16"), c?.expect));
    expect(code).toBe("rank_mismatch");
    expect(detail).toEqual({ value: 4, expected: 8 });
  });
});

describe("reader input handling", () => {
  it("decodes from a view at an odd byte offset (unaligned data is copied)", () => {
    const b = fixture("ts-f16");
    const shifted = new Uint8Array(b.length + 1);
    shifted.set(b, 1);
    const a = decodeAdapter(shifted.subarray(1));
    expect(Array.from(a.R)).toEqual(Array.from(decodeAdapter(b).R));
  });

  it("does not alias the input: changing the bytes later leaves R alone", () => {
    const b = fixture("ts-f32");
    const a = decodeAdapter(b);
    const first = a.R[0];
    b.fill(0);
    expect(a.R[0]).toBe(first);
  });

  it("validateAdapterBytes returns the error instead of throwing", () => {
    const r = validateAdapterBytes(fixture("trailing-bytes"));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe("trailing_bytes");
    const ok = validateAdapterBytes(fixture("ts-f16"));
    expect(ok.ok && ok.adapter.rank).toBe(4);
  });

  it("skips the hidden check for an adapter without a head", () => {
    expect(decodeAdapter(fixture("ts-f16"), { hidden: 384 }).head).toBeUndefined();
  });
});

describe("writer input checks", () => {
  it.each<[string, Partial<AdapterInput>, string, string]>([
    ["model id", { model: "Tiny Llama" }, "model_invalid", '"Tiny Llama"'],
    ["digest", { factors: "sha256:abc" }, "factors_invalid", '"sha256:abc"'],
    ["rank 0", { rank: 0 }, "rank_invalid", '"0"'],
    ["rank 2.5", { rank: 2.5 }, "rank_invalid", "2.5"],
    ["modules over limit", { modules: 5000 }, "modules_invalid", "2048"],
    ["R length", { R: new Float32Array(5) }, "shape_mismatch", "5"],
    ["NaN", { R: new Float32Array([0, Number.NaN, 0, 0]) }, "value_not_finite", "R[1]"],
    [
      "Infinity",
      { R: new Float32Array([0, 0, Number.POSITIVE_INFINITY, 0]) },
      "value_not_finite",
      "R[2]",
    ],
    ["F16 overflow", { R: new Float32Array([0, 0, 0, 70000]) }, "value_out_of_range", "70000"],
    ["unknown metadata", { metadata: { alpha: "16" } }, "metadata_key_unknown", "alpha"],
    ["reserved metadata", { metadata: { rank: "4" } }, "metadata_key_unknown", "rank"],
    ["source", { metadata: { source: "server" } }, "metadata_value_invalid", '"server"'],
  ])("%s", (_what, change, code, part) => {
    const got = codeOf(() => encodeAdapter({ ...base, ...change }));
    expect(got.code).toBe(code);
    expect(got.message).toContain(part);
  });

  it("F32 stores 70000 fine where F16 cannot", () => {
    const b = encodeAdapter({ ...base, R: new Float32Array([0, 0, 0, 70000]) }, { dtype: "F32" });
    expect(decodeAdapter(b).R[3]).toBe(70000);
  });

  it("rejects an unknown dtype option", () => {
    expect(codeOf(() => encodeAdapter(base, { dtype: "F64" as "F16" })).code).toBe(
      "dtype_unsupported",
    );
  });

  it("checks the head: sizes, labels count and uniqueness", () => {
    const head = { weight: new Float32Array(6), bias: new Float32Array(2), classes: 2, hidden: 3 };
    expect(codeOf(() => encodeAdapter({ ...base, head: { ...head, labels: ["a"] } })).code).toBe(
      "labels_mismatch",
    );
    expect(
      codeOf(() => encodeAdapter({ ...base, head: { ...head, labels: ["a", "a"] } })).code,
    ).toBe("labels_invalid");
    expect(codeOf(() => encodeAdapter({ ...base, head: { ...head, hidden: 4 } })).code).toBe(
      "shape_mismatch",
    );
    expect(codeOf(() => encodeAdapter({ ...base, head: { ...head, classes: 0 } })).code).toBe(
      "shape_mismatch",
    );
  });
});

describe("writer header limit", () => {
  it("refuses labels that escape past MAX_HEADER_BYTES, and accepts ordinary ones", () => {
    const classes = 256;
    const head = (labels: string[]) => ({
      weight: new Float32Array(classes),
      bias: new Float32Array(classes),
      classes,
      hidden: 1,
      labels,
    });
    const quotes = Array.from({ length: classes }, (_, i) => `${i}`.padEnd(64, '"'));
    const note = '"'.repeat(1024);
    const got = codeOf(() => encodeAdapter({ ...base, head: head(quotes), metadata: { note } }));
    expect(got.code).toBe("header_too_large");
    expect(got.detail).toMatchObject({ limit: MAX_HEADER_BYTES });
    const plain = Array.from({ length: classes }, (_, i) => `${i}`.padEnd(64, "x"));
    const a = decodeAdapter(
      encodeAdapter({ ...base, head: head(plain), metadata: { note: "n".repeat(1024) } }),
    );
    expect(a.head?.labels).toEqual(plain);
  });
});
