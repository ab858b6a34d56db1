import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  AdapterFormatError,
  type AdapterInput,
  type Dtype,
  decodeAdapter,
  encodeAdapter,
  fromBf16,
  fromF16,
  toBf16,
  toF16,
} from "../../../src/format/index.ts";
import { bytesOf, cases } from "./fixtures.ts";

const roundTo = (dtype: Dtype, x: number) =>
  dtype === "F32" ? Math.fround(x) : dtype === "F16" ? fromF16(toF16(x)) : fromBf16(toBf16(x));

const hexDigest = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((b) => `sha256:${Buffer.from(b).toString("hex")}`);
const modelId = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/);
const finite = fc.float({ noNaN: true, noDefaultInfinity: true, min: -60000, max: 60000 });
const label = fc
  .string({ minLength: 1, maxLength: 12, unit: "grapheme" })
  .filter(
    (s) =>
      ![...s].some((ch) => (ch.codePointAt(0) ?? 0) < 0x20 || ch === "\u007f") &&
      new TextEncoder().encode(s).length <= 64,
  );

const adapterArb = fc
  .record({
    model: modelId,
    factors: hexDigest,
    rank: fc.integer({ min: 1, max: 6 }),
    modules: fc.integer({ min: 1, max: 5 }),
    dtype: fc.constantFrom<Dtype>("F16", "F32", "BF16"),
    head: fc.option(
      fc.record({
        classes: fc.integer({ min: 1, max: 4 }),
        hidden: fc.integer({ min: 1, max: 6 }),
        labeled: fc.boolean(),
      }),
      { nil: undefined },
    ),
    metadata: fc.record(
      {
        created: fc.constant("2026-11-28T17:00:00.123Z"),
        source: fc.constantFrom("worker", "client", "import"),
        steps: fc.nat().map(String),
        note: fc.string({ maxLength: 40 }).filter((s) => !/[\uD800-\uDFFF]/u.test(s)),
      },
      { requiredKeys: [] },
    ),
    seed: fc.integer(),
  })
  .chain((p) =>
    fc.record({
      p: fc.constant(p),
      R: fc.array(finite, {
        minLength: p.modules * p.rank * p.rank,
        maxLength: p.modules * p.rank * p.rank,
      }),
      w: fc.array(finite, {
        minLength: (p.head?.classes ?? 0) * (p.head?.hidden ?? 0),
        maxLength: (p.head?.classes ?? 0) * (p.head?.hidden ?? 0),
      }),
      b: fc.array(finite, { minLength: p.head?.classes ?? 0, maxLength: p.head?.classes ?? 0 }),
      labels: fc.uniqueArray(label, {
        minLength: p.head?.classes ?? 0,
        maxLength: p.head?.classes ?? 0,
      }),
    }),
  );

/** Decodes, and fails the property if anything other than AdapterFormatError escapes. */
function safeDecode(bytes: Uint8Array): "valid" | string {
  try {
    decodeAdapter(bytes);
    return "valid";
  } catch (e) {
    if (!(e instanceof AdapterFormatError)) throw e;
    expect(e.message).not.toContain("unexpected failure");
    return e.code;
  }
}

describe("properties", () => {
  it("encode then decode gives back the input rounded to the dtype", () => {
    fc.assert(
      fc.property(adapterArb, ({ p, R, w, b, labels }) => {
        const input: AdapterInput = {
          model: p.model,
          factors: p.factors,
          rank: p.rank,
          modules: p.modules,
          R: new Float32Array(R),
          metadata: p.metadata as Record<string, string>,
        };
        if (p.head !== undefined) {
          input.head = {
            classes: p.head.classes,
            hidden: p.head.hidden,
            weight: new Float32Array(w),
            bias: new Float32Array(b),
          };
          if (p.head.labeled) input.head.labels = labels;
        }
        let bytes: Uint8Array;
        try {
          bytes = encodeAdapter(input, { dtype: p.dtype });
        } catch (e) {
          // The only legal refusal: a value beyond the dtype's range (F16 tops out at 65504).
          expect(e).toBeInstanceOf(AdapterFormatError);
          expect((e as AdapterFormatError).code).toBe("value_out_of_range");
          return;
        }
        const a = decodeAdapter(bytes, {
          model: p.model,
          factors: p.factors,
          rank: p.rank,
          modules: p.modules,
          hidden: p.head?.hidden,
        });
        expect(a.dtype).toBe(p.dtype);
        expect(Array.from(a.R)).toEqual(R.map((x) => roundTo(p.dtype, x)));
        expect(a.metadata).toMatchObject(p.metadata);
        if (p.head !== undefined) {
          expect(Array.from(a.head?.weight ?? [])).toEqual(w.map((x) => roundTo(p.dtype, x)));
          expect(Array.from(a.head?.bias ?? [])).toEqual(b.map((x) => roundTo(p.dtype, x)));
          expect(a.head?.labels).toEqual(p.head.labeled ? labels : undefined);
        } else expect(a.head).toBeUndefined();
        // Re-encoding the decoded adapter is a fixed point.
        expect(
          encodeAdapter(
            { ...input, R: a.R, ...(a.head ? { head: a.head } : {}) },
            { dtype: p.dtype },
          ),
        ).toEqual(bytes);
      }),
      { numRuns: 300 },
    );
  });

  it("arbitrary bytes end in AdapterFormatError or a valid decode", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        safeDecode(bytes);
      }),
      { numRuns: 2000 },
    );
  });

  it("a plausible header over random data ends in AdapterFormatError or a valid decode", () => {
    const entry = fc.record({
      dtype: fc.constantFrom("F16", "F32", "BF16", "I8", 3),
      shape: fc.array(fc.oneof(fc.nat(5), fc.constant(-1), fc.constant(1.5)), { maxLength: 4 }),
      data_offsets: fc.array(fc.nat(80), { maxLength: 3 }),
    });
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom("R", "head.weight", "head.bias", "x"), entry),
        fc.uint8Array({ maxLength: 80 }),
        (tensors, data) => {
          const h = JSON.stringify({
            __metadata__: {
              format: "loraxs",
              format_version: "1",
              model: "m",
              factors: `sha256:${"0".repeat(64)}`,
              rank: "2",
              modules: "1",
            },
            ...tensors,
          });
          const head = new TextEncoder().encode(h);
          const bytes = new Uint8Array(8 + head.length + data.length);
          new DataView(bytes.buffer).setUint32(0, head.length, true);
          bytes.set(head, 8);
          bytes.set(data, 8 + head.length);
          safeDecode(bytes);
        },
      ),
      { numRuns: 1000 },
    );
  });

  const valid = cases.filter((c) => c.verdict === "valid").map(bytesOf);

  it("bit flips, truncations and splices of valid files never throw anything else", () => {
    const mutation = fc.oneof(
      fc.record({
        kind: fc.constant("flip" as const),
        at: fc.nat(),
        bit: fc.nat(7),
        times: fc.integer({ min: 1, max: 4 }),
      }),
      fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
      fc.record({
        kind: fc.constant("splice" as const),
        at: fc.nat(),
        len: fc.nat(16),
        insert: fc.uint8Array({ maxLength: 16 }),
      }),
      fc.record({
        kind: fc.constant("byte" as const),
        at: fc.nat(),
        value: fc.constantFrom(0x00, 0x22, 0x2c, 0x5b, 0x7b, 0x7d, 0xff, 0x30, 0x39, 0x7f),
      }),
    );
    fc.assert(
      fc.property(
        fc.nat(valid.length - 1),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        (which, muts) => {
          let b = (valid[which] as Uint8Array).slice();
          for (const m of muts) {
            const at = b.length === 0 ? 0 : m.at % b.length;
            if (m.kind === "flip") {
              for (let i = 0; i < m.times && b.length > 0; i++) {
                const j = (at + i * 7) % b.length;
                b[j] = (b[j] as number) ^ (1 << m.bit);
              }
            } else if (m.kind === "truncate") b = b.slice(0, at);
            else if (m.kind === "byte") b[at] = m.value;
            else b = new Uint8Array([...b.slice(0, at), ...m.insert, ...b.slice(at + m.len)]);
          }
          safeDecode(b);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("a flipped bit in the data of an F16 file changes one value or is refused as non-finite", () => {
    const c = cases.find((x) => x.name === "ts-f16");
    if (c === undefined) throw new Error("missing ts-f16");
    const b = bytesOf(c);
    const before = decodeAdapter(b).R;
    const dataStart = b.length - before.length * 2;
    fc.assert(
      fc.property(fc.nat(before.length * 2 - 1), fc.nat(7), (at, bit) => {
        const m = b.slice();
        m[dataStart + at] = (m[dataStart + at] as number) ^ (1 << bit);
        const code = safeDecode(m);
        if (code === "valid") {
          const after = decodeAdapter(m).R;
          const changed = after
            .map((x, i) => (Object.is(x, before[i]) ? 0 : 1))
            .reduce((s, x) => s + x, 0);
          expect(changed).toBe(1);
        } else expect(code).toBe("value_not_finite");
      }),
      { numRuns: 500 },
    );
  });
});
