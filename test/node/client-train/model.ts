// Builds tiny-llama plus its training step (model.train.onnx in the manifest, train-reference.json)
// into .cache/models/tiny-llama-train when missing. A lock folder keeps test files from
// building it twice at once.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { codeStamp, stampMatches, writeStamp } from "../client/helpers/code-stamp.ts";
import { MODELS_DIR, REPO } from "../client/helpers/models.ts";

export const TRAIN_MODEL_DIR = join(MODELS_DIR, "tiny-llama-train");
/** Step-graph shape of the test model: two rows of 32 tokens. */
export const TEST_BATCH = 2;
export const TEST_SEQ = 32;
/** prepare (~1 min) + export (~30 s) on a loaded 2-core machine. */
const LOCK_WAIT_MS = 280_000;

function run(args: string[]): void {
  const r = spawnSync(args[0] as string, args.slice(1), { cwd: REPO, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`${args.join(" ")} failed (exit ${r.status})`);
}

export async function ensureTrainModel(): Promise<string> {
  const dir = TRAIN_MODEL_DIR;
  const stamp = codeStamp(REPO);
  const done = () => existsSync(join(dir, "train-reference.json")) && stampMatches(dir, stamp);
  if (done()) return dir;
  mkdirSync(MODELS_DIR, { recursive: true });
  const lock = `${dir}.lock`;
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (done()) return dir;
      if (Date.now() - started > LOCK_WAIT_MS) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    if (done()) return dir;
    rmSync(dir, { recursive: true, force: true }); // stale or half-built
    run(["npm", "run", "--silent", "prepare-model", "--", "--preset", "tiny-llama", "--out", dir]);
    run([
      process.execPath,
      "scripts/py.mjs",
      "-m",
      "loraxs.export_train_step",
      "--dir",
      dir,
      "--batch",
      String(TEST_BATCH),
      "--seq",
      String(TEST_SEQ),
      "--reference",
    ]);
    writeStamp(dir, stamp);
    return dir;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

export interface TrainReference {
  shapes: { batch: number; seq: number };
  input_ids: number[][];
  attention_mask: number[][];
  labels: number[][];
  R: number[];
  loss: number;
  grad: number[];
  adamw: {
    steps: number;
    lr: number;
    weight_decay: number;
    betas: [number, number];
    eps: number;
    losses: number[];
    R: number[];
  };
}

export function readTrainReference(dir: string): TrainReference {
  return JSON.parse(readFileSync(join(dir, "train-reference.json"), "utf8")) as TrainReference;
}
