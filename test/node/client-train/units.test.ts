// The pure parts of on-device training: packing, split, schedule, clipping, AdamW's first step,
// the memory-budget choice, and the errors that name the offending value.
import { describe, expect, it } from "vitest";
import {
  AdamW,
  chooseStepShape,
  clipGradNorm,
  estimateStepBytes,
  IGNORE_INDEX,
  learningRate,
  packRows,
  splitRows,
} from "../../../src/client/train/index.ts";

const SMOLLM2 = { hidden_size: 576, num_layers: 30, num_attention_heads: 9, vocab_size: 49152 };
const SMOLLM2_WEIGHTS = 541_746_432;

describe("packing", () => {
  it("joins sequences with EOS, cuts rows of seq, pads the last with ignored labels", () => {
    const rows = packRows(
      [
        [5, 6, 7],
        [8, 9],
      ],
      4,
      2,
      0,
    );
    expect(rows.map((r) => r.ids)).toEqual([
      [5, 6, 7, 2],
      [8, 9, 2, 0],
    ]);
    expect(rows[1]?.mask).toEqual([1, 1, 1, 0]);
    expect(rows[1]?.labels).toEqual([8, 9, 2, IGNORE_INDEX]);
    expect(rows.map((r) => r.tokens)).toEqual([3, 2]);
  });
  it("refuses a sequence length below 2 with the value", () => {
    expect(() => packRows([[1, 2]], 1, undefined)).toThrow(/sequence length 1/);
  });
  it("splits held-out rows deterministically and disjointly", () => {
    const rows = packRows([Array.from({ length: 40 }, (_, i) => i + 3)], 4, undefined);
    const a = splitRows(rows, 0.2, 3);
    const b = splitRows(rows, 0.2, 3);
    expect(a.heldOut.map((r) => r.ids)).toEqual(b.heldOut.map((r) => r.ids));
    expect(a.heldOut).toHaveLength(2);
    expect(a.train).toHaveLength(8);
    for (const h of a.heldOut) expect(a.train).not.toContain(h);
    expect(() => splitRows(rows, 1, 0)).toThrow(/held-out fraction 1/);
  });
});

describe("optimizer", () => {
  it("warms up linearly, then decays by cosine to the floor", () => {
    const o = { lr: 1, steps: 12, warmupSteps: 2, minLrRatio: 0.1 };
    expect(learningRate(0, o)).toBeCloseTo(0.5);
    expect(learningRate(1, o)).toBeCloseTo(1);
    expect(learningRate(2, o)).toBeCloseTo(1);
    expect(learningRate(11, o)).toBeCloseTo(0.1);
    expect(learningRate(7, o)).toBeLessThan(1);
    expect(learningRate(7, o)).toBeGreaterThan(0.1);
  });
  it("clips to the max norm and reports the norm before", () => {
    const g = new Float32Array([3, 4]);
    expect(clipGradNorm(g, 1)).toBeCloseTo(5);
    expect(Math.hypot(g[0] as number, g[1] as number)).toBeCloseTo(1, 5);
  });
  it("AdamW's first step moves each value by lr against its gradient's sign, after decay", () => {
    const p = new Float32Array([1, -1, 0.5]);
    new AdamW(3, { weightDecay: 0.1 }).step(p, new Float32Array([2, -0.001, 0]), 0.01);
    expect(p[0]).toBeCloseTo(1 * (1 - 0.001) - 0.01, 6);
    expect(p[1]).toBeCloseTo(-1 * (1 - 0.001) + 0.01, 5);
    expect(p[2]).toBeCloseTo(0.5 * (1 - 0.001), 6);
    expect(() => new AdamW(3).step(p, new Float32Array(2), 0.1)).toThrow(/grad 2/);
  });
});

describe("memory budget", () => {
  it("estimates SmolLM2 at 1x256 near the measured 2.1 GB", () => {
    const e = estimateStepBytes(SMOLLM2, SMOLLM2_WEIGHTS, 1, 256);
    expect(e).toBeGreaterThan(1.6e9);
    expect(e).toBeLessThan(2.6e9);
  });
  it("picks the largest shape that fits and names the smallest need otherwise", () => {
    const shapes = [
      { batch: 1, seq: 128 },
      { batch: 1, seq: 512 },
      { batch: 2, seq: 256 },
    ];
    const small = estimateStepBytes(SMOLLM2, SMOLLM2_WEIGHTS, 1, 128);
    expect(chooseStepShape(small + 1, SMOLLM2, SMOLLM2_WEIGHTS, shapes)).toMatchObject({
      batch: 1,
      seq: 128,
    });
    expect(chooseStepShape(8e9, SMOLLM2, SMOLLM2_WEIGHTS, shapes)).toMatchObject({
      batch: 1,
      seq: 512,
    });
    expect(() => chooseStepShape(1e8, SMOLLM2, SMOLLM2_WEIGHTS, shapes)).toThrow(
      new RegExp(`memory budget 100000000 bytes.*${Math.ceil(small)}`),
    );
  });
});
