import { ClientError } from "../errors.ts";
import { createRng } from "./prng.ts";

export interface SamplingOptions {
  /** 0 (default) or absent with no top-k/top-p: greedy. */
  temperature?: number;
  /** Keep the k most likely tokens (integer ≥ 1). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (0 < p ≤ 1). */
  topP?: number;
  /** PRNG seed; the same seed and logits give the same tokens. */
  seed?: number;
}

/** Index of the largest value; ties go to the lowest index, as torch.argmax does. */
export function argmax(values: Float32Array): number {
  let best = 0;
  let max = values[0] ?? Number.NEGATIVE_INFINITY;
  for (let i = 1; i < values.length; i++) {
    const v = values[i] as number;
    if (v > max) {
      max = v;
      best = i;
    }
  }
  return best;
}

function check(options: SamplingOptions): void {
  const { temperature, topK, topP } = options;
  if (temperature !== undefined && !(temperature >= 0 && Number.isFinite(temperature))) {
    throw new ClientError("bad_sampling", `temperature ${temperature} must be a finite number ≥ 0`);
  }
  if (topK !== undefined && !(Number.isInteger(topK) && topK >= 1)) {
    throw new ClientError("bad_sampling", `topK ${topK} must be an integer ≥ 1`);
  }
  if (topP !== undefined && !(topP > 0 && topP <= 1)) {
    throw new ClientError("bad_sampling", `topP ${topP} must be in (0, 1]`);
  }
}

/** A sampler over one position's logits: greedy, or temperature with top-k and top-p. */
export function createSampler(options: SamplingOptions = {}): (logits: Float32Array) => number {
  check(options);
  const temperature = options.temperature ?? 0;
  if (temperature === 0) return argmax;
  const rng = createRng(options.seed ?? 0);
  const topK = options.topK;
  const topP = options.topP ?? 1;
  return (logits) => {
    const n = logits.length;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < n; i++) if ((logits[i] as number) > max) max = logits[i] as number;
    const probs = new Float64Array(n);
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const p = Math.exp(((logits[i] as number) - max) / temperature);
      probs[i] = p;
      sum += p;
    }
    // Candidates: tokens above (1 - p) / n cover at least mass p, so the nucleus lies among them.
    const floor = topK === undefined && topP < 1 ? ((1 - topP) / n) * sum : 0;
    let candidates: number[] = [];
    for (let i = 0; i < n; i++) if ((probs[i] as number) > floor) candidates.push(i);
    candidates.sort((a, b) => (probs[b] as number) - (probs[a] as number) || a - b);
    if (topK !== undefined) candidates = candidates.slice(0, topK);
    let mass = 0;
    for (const i of candidates) mass += probs[i] as number;
    if (topP < 1) {
      let cumulative = 0;
      let keep = 0;
      while (keep < candidates.length) {
        cumulative += probs[candidates[keep] as number] as number;
        keep += 1;
        if (cumulative >= topP * mass) break;
      }
      candidates = candidates.slice(0, keep);
      mass = cumulative;
    }
    let u = rng() * mass;
    for (const i of candidates) {
      u -= probs[i] as number;
      if (u < 0) return i;
    }
    return candidates[candidates.length - 1] as number;
  };
}
