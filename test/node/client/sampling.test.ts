import { describe, expect, it } from "vitest";
import { argmax, ClientError, createRng, createSampler } from "../../../src/client/index.ts";

const logits = Float32Array.from([1, 3, 2, 3, -1]);

describe("sampling", () => {
  it("greedy picks the first maximum, as torch.argmax", () => {
    expect(argmax(logits)).toBe(1);
    expect(createSampler()(logits)).toBe(1);
    expect(createSampler({ temperature: 0, topK: 3 })(logits)).toBe(1);
  });

  it("the same seed gives the same tokens; another seed other tokens", () => {
    const flat = new Float32Array(50).fill(0);
    const draw = (seed: number) => {
      const s = createSampler({ temperature: 1, seed });
      return Array.from({ length: 20 }, () => s(flat));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
  });

  it("top-k keeps only the k best tokens", () => {
    const s = createSampler({ temperature: 5, topK: 2, seed: 1 });
    const seen = new Set(Array.from({ length: 300 }, () => s(logits)));
    expect([...seen].sort()).toEqual([1, 3]);
  });

  it("top-p keeps the smallest set reaching p", () => {
    // probabilities ∝ e^[4, 2, 0, 0]: 0.865, 0.117, 0.016, 0.016
    const l = Float32Array.from([4, 2, 0, 0]);
    const s90 = createSampler({ temperature: 1, topP: 0.9, seed: 3 });
    expect(new Set(Array.from({ length: 400 }, () => s90(l)))).toEqual(new Set([0, 1]));
    const s50 = createSampler({ temperature: 1, topP: 0.5, seed: 3 });
    expect(new Set(Array.from({ length: 100 }, () => s50(l)))).toEqual(new Set([0]));
  });

  it("temperature sampling follows the softmax", () => {
    const l = Float32Array.from([Math.log(3), 0]); // p = 0.75, 0.25
    const s = createSampler({ temperature: 1, seed: 11 });
    const n = 4000;
    let zeros = 0;
    for (let i = 0; i < n; i++) if (s(l) === 0) zeros++;
    expect(zeros / n).toBeGreaterThan(0.72);
    expect(zeros / n).toBeLessThan(0.78);
  });

  it("rejects bad options with the offending value", () => {
    expect(() => createSampler({ temperature: -1 })).toThrow(/temperature -1/);
    expect(() => createSampler({ topK: 0 })).toThrow(/topK 0/);
    expect(() => createSampler({ topP: 1.5 })).toThrow(ClientError);
  });

  it("the PRNG is uniform enough on [0, 1)", () => {
    const rng = createRng(42);
    const values = Array.from({ length: 10000 }, rng);
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThan(1);
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
  });
});
