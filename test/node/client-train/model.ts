// Builds tiny-llama plus its training step (model.train.onnx in the manifest, train-reference.json)
// into .cache/models/tiny-llama-train when missing. A lock folder keeps test files from
// building it twice at once.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { buildOnce } from "../../../harness/build-once.ts";
import { codeStamp, stampMatches, writeStamp } from "../../../harness/code-stamp.ts";
import { MODELS_DIR, REPO } from "../../../harness/models.ts";

export const TRAIN_MODEL_DIR = join(MODELS_DIR, "tiny-llama-train");
/** Step-graph shape of the test model: two rows of 32 tokens. */
export const TEST_BATCH = 2;
export const TEST_SEQ = 32;

function run(args: string[]): void {
  const r = spawnSync(args[0] as string, args.slice(1), { cwd: REPO, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`${args.join(" ")} failed (exit ${r.status})`);
}

export async function ensureTrainModel(): Promise<string> {
  const dir = TRAIN_MODEL_DIR;
  const stamp = codeStamp(REPO);
  const done = () => existsSync(join(dir, "train-reference.json")) && stampMatches(dir, stamp);
  return buildOnce(dir, done, () => {
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
  });
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
