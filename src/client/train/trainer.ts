// The training loop: packed token rows, AdamW with warm-up + cosine, gradient clipping,
// gradient accumulation, held-out loss with early stopping, progress events, cancellation.
import { ClientError } from "../errors.ts";
import { batchAt, batches, packRows, type Row, splitRows } from "./data.ts";
import { AdamW, type AdamWOptions, clipGradNorm } from "./optimizer.ts";
import { learningRate } from "./schedule.ts";
import type { TrainStep } from "./step.ts";

export interface TrainOptions extends AdamWOptions {
  /** Optimizer steps (default 100). */
  steps?: number;
  /** Peak learning rate (default 1e-3, the Python trainer's default for R). */
  lr?: number;
  warmupSteps?: number;
  minLrRatio?: number;
  /** Step-graph runs whose gradients make one optimizer step (default 1). */
  accumulate?: number;
  /** Max gradient norm (default 1; Infinity disables clipping). */
  clipNorm?: number;
  /** Fraction of rows kept for the held-out loss (default 0.1; 0 disables it). */
  heldOut?: number;
  /** Evaluate the held-out loss every this many steps (default 10). */
  evalEvery?: number;
  /** Stop after this many evaluations without improvement (default 3; 0 disables). */
  patience?: number;
  seed?: number;
  signal?: AbortSignal;
  onProgress?: (event: TrainEvent) => void;
}

export type TrainEvent =
  | {
      kind: "step";
      step: number;
      steps: number;
      loss: number;
      lr: number;
      gradNorm: number;
      tokens: number;
      ms: number;
    }
  | { kind: "eval"; step: number; heldOutLoss: number; best: number }
  | { kind: "stop"; step: number; reason: "steps" | "early_stopping" };

export interface TrainResult {
  /** The R with the best held-out loss (the last R when there is no held-out set). */
  R: Float32Array;
  steps: number;
  losses: number[];
  heldOutLosses: { step: number; loss: number }[];
  stoppedEarly: boolean;
  trainTokens: number;
  ms: number;
}

export const TRAIN_DEFAULTS = {
  steps: 100,
  lr: 1e-3,
  warmupSteps: 0,
  minLrRatio: 0.1,
  accumulate: 1,
  clipNorm: 1,
  heldOut: 0.1,
  evalEvery: 10,
  patience: 3,
  seed: 0,
} as const;
/** Most optimizer steps one call runs: bounds a mistyped option (100k steps ≈ days on a phone). */
export const MAX_STEPS = 100_000;

/**
 * Lets the event loop run (input, rendering, a cancel click) between graph runs: onnxruntime-web's
 * WASM run can settle as a microtask, and a loop of those alone would starve the page.
 */
const yieldToEventLoop = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

function check(name: string, value: number, ok: boolean, want: string): void {
  if (!ok) throw new ClientError("bad_option", `${name} is ${value}; expected ${want}`);
}

/** Mean loss over `rows` (token-weighted), R unchanged. */
export async function evaluate(
  step: TrainStep,
  rows: readonly Row[],
  R: Float32Array,
  signal?: AbortSignal,
): Promise<number> {
  let sum = 0;
  let tokens = 0;
  for (const group of batches(rows, step.batch, step.seq)) {
    await yieldToEventLoop();
    signal?.throwIfAborted();
    const r = await step.run(group, R);
    sum += r.loss * r.tokens;
    tokens += r.tokens;
  }
  return tokens === 0 ? Number.NaN : sum / tokens;
}

/**
 * Train R from `start` on token rows. `start` is not modified; the result is a new array.
 * An aborted signal rejects with its reason (the caller's model keeps its previous R).
 */
export async function trainRows(
  step: TrainStep,
  rows: readonly Row[],
  start: Float32Array,
  options: TrainOptions = {},
): Promise<TrainResult> {
  const o = { ...TRAIN_DEFAULTS, ...options };
  check(
    "steps",
    o.steps,
    Number.isInteger(o.steps) && o.steps >= 1 && o.steps <= MAX_STEPS,
    `an integer in [1, ${MAX_STEPS}]`,
  );
  check("lr", o.lr, o.lr > 0 && Number.isFinite(o.lr), "a positive number");
  check(
    "accumulate",
    o.accumulate,
    Number.isInteger(o.accumulate) && o.accumulate >= 1,
    "an integer >= 1",
  );
  check(
    "evalEvery",
    o.evalEvery,
    Number.isInteger(o.evalEvery) && o.evalEvery >= 1,
    "an integer >= 1",
  );
  if (rows.length === 0)
    throw new ClientError("no_training_data", "no token rows to train on (empty text?)");
  const t0 = performance.now();
  const { train, heldOut } = splitRows(rows, o.heldOut, o.seed);
  const R = new Float32Array(start);
  let best = new Float32Array(R);
  let bestLoss = Number.POSITIVE_INFINITY;
  let sinceBest = 0;
  const opt = new AdamW(R.length, o);
  const result: TrainResult = {
    R: best,
    steps: 0,
    losses: [],
    heldOutLosses: [],
    stoppedEarly: false,
    trainTokens: 0,
    ms: 0,
  };
  const schedule = {
    lr: o.lr,
    steps: o.steps,
    warmupSteps: o.warmupSteps,
    minLrRatio: o.minLrRatio,
  };
  let micro = 0;
  const evalNow = async (at: number) => {
    const loss = await evaluate(step, heldOut, R, o.signal);
    result.heldOutLosses.push({ step: at, loss });
    if (loss < bestLoss) {
      bestLoss = loss;
      best = new Float32Array(R);
      sinceBest = 0;
    } else sinceBest += 1;
    o.onProgress?.({ kind: "eval", step: at, heldOutLoss: loss, best: bestLoss });
  };
  if (heldOut.length > 0) await evalNow(0);
  for (let t = 0; t < o.steps; t++) {
    const ts = performance.now();
    const grad = new Float32Array(R.length);
    let lossSum = 0;
    let tokens = 0;
    for (let a = 0; a < o.accumulate; a++) {
      await yieldToEventLoop();
      o.signal?.throwIfAborted();
      const r = await step.run(batchAt(train, micro++, step.batch, step.seq), R);
      for (let i = 0; i < grad.length; i++)
        grad[i] = (grad[i] as number) + (r.grad[i] as number) * r.tokens;
      lossSum += r.loss * r.tokens;
      tokens += r.tokens;
    }
    o.signal?.throwIfAborted();
    const scale = tokens > 0 ? 1 / tokens : 0;
    for (let i = 0; i < grad.length; i++) grad[i] = (grad[i] as number) * scale;
    const norm = clipGradNorm(grad, o.clipNorm);
    const lr = learningRate(t, schedule);
    opt.step(R, grad, lr);
    const loss = tokens > 0 ? lossSum / tokens : Number.NaN;
    result.losses.push(loss);
    result.steps = t + 1;
    result.trainTokens += tokens;
    o.onProgress?.({
      kind: "step",
      step: t + 1,
      steps: o.steps,
      loss,
      lr,
      gradNorm: norm,
      tokens,
      ms: performance.now() - ts,
    });
    if (heldOut.length > 0 && ((t + 1) % o.evalEvery === 0 || t + 1 === o.steps)) {
      await evalNow(t + 1);
      if (o.patience > 0 && sinceBest >= o.patience) {
        result.stoppedEarly = true;
        o.onProgress?.({ kind: "stop", step: t + 1, reason: "early_stopping" });
        break;
      }
    }
  }
  if (!result.stoppedEarly) o.onProgress?.({ kind: "stop", step: result.steps, reason: "steps" });
  result.R = heldOut.length > 0 ? best : R;
  result.ms = performance.now() - t0;
  return result;
}

/** Token rows from texts for a step graph of sequence length `seq`. */
export function rowsFromTexts(
  encode: (text: string) => number[],
  texts: readonly string[],
  seq: number,
  eos: number | undefined,
  padId = 0,
): Row[] {
  return packRows(
    texts.map((t) => encode(t)),
    seq,
    eos,
    padId,
  );
}
