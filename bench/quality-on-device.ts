// On-device training quality: the client's training loop (src/client/train: trainRows, AdamW,
// warm-up + cosine, clipping) on onnxruntime-node, on exactly the blocks, initial R and schedule
// the worker's trainer used (plan.json from bench/quality_on_device.py worker), then the adapter
// file the client would upload (F16, source=client). Both adapters are then scored by
// bench/quality_on_device.py score (loraxs.evaluate) on the same held-out tokens.
//
//   node --experimental-strip-types bench/quality-on-device.ts --dir <model folder with onnx_train> \
//     --plan out/plan.json --out out/client.safetensors [--mode rows|texts] [--log out/client.json]
//
// --mode rows (default): plan.rows in the worker's order (the client's own seeded shuffle is
//   undone by placing each row where that shuffle picks it), plan.R0 as the start.
// --mode texts: OnDeviceTrainer.personalize on the president's training texts: the client's own
//   tokenization, packing, order and N(0, 1e-5) start; same steps, batch (the graph's), lr, schedule.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fsCache, loadModel, OnDeviceTrainer, trainRows } from "../src/client/index.ts";
import { IGNORE_INDEX, type Row, shuffled } from "../src/client/train/data.ts";
import { encodeAdapter } from "../src/format/index.ts";

const { values: args } = parseArgs({
  options: {
    dir: { type: "string" },
    plan: { type: "string" },
    out: { type: "string" },
    mode: { type: "string", default: "rows" },
    log: { type: "string" },
    device: { type: "string", default: "cpu" },
  },
});
if (args.dir === undefined || args.plan === undefined || args.out === undefined)
  throw new Error("--dir <model folder>, --plan <plan.json> and --out <adapter file> are required");

interface Plan {
  user: string;
  seq: number;
  batch: number;
  steps: number;
  lr: number;
  warmup_steps: number;
  min_lr_ratio: number;
  clip: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  R0: number[];
  rows: { ids: number[]; mask: number[] }[];
  train_texts: string[];
}
const plan = JSON.parse(readFileSync(args.plan, "utf8")) as Plan;
const SEED = 0;

const cacheDir = mkdtempSync(join(tmpdir(), "loraxs-quality-"));
const t0 = performance.now();
const model = await loadModel(args.dir, {
  device: args.device as "cpu" | "wasm",
  cache: await fsCache(cacheDir),
});
const trainer = await OnDeviceTrainer.create(model, args.dir);
const { batch, seq } = trainer.step;
if (seq !== plan.seq || batch !== plan.batch)
  throw new Error(`step graph is ${batch} x ${seq}; the plan is ${plan.batch} x ${plan.seq}`);
console.log(`loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${model.backend.reason}`);

const options = {
  steps: plan.steps,
  lr: plan.lr,
  warmupSteps: plan.warmup_steps,
  minLrRatio: plan.min_lr_ratio,
  clipNorm: plan.clip,
  beta1: plan.betas[0],
  beta2: plan.betas[1],
  eps: plan.eps,
  weightDecay: plan.weight_decay,
  accumulate: 1,
  heldOut: 0,
  patience: 0,
  seed: SEED,
};
const losses: number[] = [];
let last = performance.now();
const onProgress = (e: {
  kind: string;
  step?: number;
  loss?: number;
  lr?: number;
  ms?: number;
}) => {
  if (e.kind !== "step") return;
  losses.push(e.loss as number);
  if (performance.now() - last > 30_000 || e.step === plan.steps) {
    last = performance.now();
    console.log(
      `step ${e.step}/${plan.steps} loss ${(e.loss as number).toFixed(4)} lr ${(e.lr as number).toExponential(2)} (${Math.round(e.ms as number)} ms)`,
    );
  }
};

const t1 = performance.now();
let R: Float32Array;
let steps: number;
let trainTokens: number;
if (args.mode === "rows") {
  const want: Row[] = plan.rows.map(({ ids, mask }) => {
    const labels = ids.map((id, i) => (mask[i] === 1 ? id : IGNORE_INDEX));
    let tokens = 0;
    for (let i = 1; i < mask.length; i++) tokens += (mask[i] as number) * (mask[i - 1] as number);
    return { ids, mask, labels, tokens };
  });
  if (want.length !== plan.steps * plan.batch)
    throw new Error("plan.rows is not steps x batch rows");
  // trainRows shuffles its rows with the seed (splitRows); place each row where that shuffle takes it.
  const order = shuffled(
    want.map((_, i) => i),
    SEED,
  );
  const rows = new Array<Row>(want.length);
  order.forEach((from, k) => {
    rows[from] = want[k] as Row;
  });
  if (shuffled(rows, SEED).some((r, k) => r !== want[k]))
    throw new Error("row order not preserved");
  const res = await trainRows(trainer.step, rows, Float32Array.from(plan.R0), {
    ...options,
    onProgress,
  });
  R = res.R;
  steps = res.steps;
  trainTokens = res.trainTokens;
} else {
  const res = await trainer.personalize(plan.train_texts, { ...options, onProgress });
  R = res.R;
  steps = res.steps;
  trainTokens = res.trainTokens;
}
const trainMs = performance.now() - t1;
const m = model.manifest;
const bytes = encodeAdapter(
  {
    model: m.id,
    factors: m.factors.sha256,
    rank: m.rank,
    modules: m.modules.length,
    R,
    metadata: {
      source: "client",
      steps: String(steps),
      created: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      note: `SOTU ${plan.user}: ${steps} steps x ${batch} x ${seq} tokens, lr ${plan.lr} (client, ${model.backend.runtime} ${model.backend.device}, mode ${args.mode})`,
    },
  },
  { dtype: "F16" },
);
writeFileSync(args.out, bytes);
const summary = {
  user: plan.user,
  mode: args.mode,
  backend: `${model.backend.runtime} ${model.backend.device}`,
  cpus: cpus().length,
  cpu: cpus()[0]?.model,
  steps,
  trainTokens,
  trainSeconds: Math.round(trainMs / 100) / 10,
  stepMsMean: Math.round(trainMs / steps),
  firstLoss: losses[0],
  lastLoss: losses.at(-1),
  losses,
  adapter: args.out,
  adapterBytes: bytes.length,
};
if (args.log !== undefined) writeFileSync(args.log, `${JSON.stringify(summary, null, 1)}\n`);
console.log(JSON.stringify({ ...summary, losses: undefined }));
await trainer.dispose();
await model.dispose();
rmSync(cacheDir, { recursive: true, force: true });
