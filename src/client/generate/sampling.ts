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

/** Sample an index from unnormalised probabilities. */
function draw(probs: Float64Array, sum: number, u01: number): number {
  let u = u01 * sum;
  for (let i = 0; i < probs.length; i++) {
    u -= probs[i] as number;
    if (u < 0) return i;
  }
  return probs.length - 1;
}

/** Indices of the k largest values, largest first (ties: lower index first). */
function topIndices(values: Float64Array, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (best.length === k && v <= (values[best[k - 1] as number] as number)) continue;
    let j = best.length === k ? k - 1 : best.length;
    while (j > 0 && (values[best[j - 1] as number] as number) < v) j--;
    best.splice(j, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}

/** Indices with a value above `floor`, largest first. */
function aboveFloor(values: Float64Array, floor: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length; i++) if ((values[i] as number) > floor) out.push(i);
  return out.sort((a, b) => (values[b] as number) - (values[a] as number) || a - b);
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
    if (topK === undefined && topP >= 1) return draw(probs, sum, rng());
    // Candidates: the k best; or, for top-p alone, the tokens above (1 - p) / n of the mass,
    // which cover at least mass p, so the nucleus lies among them (no sort of the whole vocabulary).
    let candidates =
      topK !== undefined ? topIndices(probs, topK) : aboveFloor(probs, ((1 - topP) / n) * sum);
    let mass = 0;
    for (const i of candidates) mass += probs[i] as number;
    if (topP < 1) {
      // The nucleus is p of the mass left after top-k (all of it without top-k).
      const target = topP * (topK !== undefined ? mass : sum);
      let cumulative = 0;
      let keep = 0;
      while (keep < candidates.length) {
        cumulative += probs[candidates[keep] as number] as number;
        keep += 1;
        if (cumulative >= target) break;
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
