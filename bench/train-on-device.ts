// On-device training benchmark: step time and training tokens/s of the exported step graph
// (loss, dL/dR) per backend, the forward-only time of the inference graph for comparison,
// session creation time, peak RSS, and the time to personalize on 20k tokens extrapolated
// from the measured step time.
//
//   node --experimental-strip-types bench/train-on-device.ts --dir <prepared folder whose manifest has onnx_train>
//   node --experimental-strip-types bench/train-on-device.ts --dir .cache/models/tiny-llama-train --steps 5
//
// The folder needs model.onnx(+.data) and model.train.onnx, listed in the manifest's onnx_train block
// (npm run prepare-model -- ... --train-step 1x128, or python -m loraxs.export_train_step --dir ...).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { median } from "../harness/stats.ts";
import { fsCache, loadModel } from "../src/client/index.ts";
import { initR, OnDeviceTrainer, type Row } from "../src/client/train/index.ts";

const { values: args } = parseArgs({
  options: {
    dir: { type: "string" },
    steps: { type: "string", default: "3" },
    devices: { type: "string", default: "cpu,wasm" },
    tokens: { type: "string", default: "20000" },
    epochs: { type: "string", default: "1" },
    out: { type: "string" },
  },
});
if (args.dir === undefined)
  throw new Error("--dir <prepared model folder whose manifest has onnx_train> is required");
const DIR = args.dir;
const STEPS = Number(args.steps);
const TARGET_TOKENS = Number(args.tokens);
const EPOCHS = Number(args.epochs);

function randomRows(batch: number, seq: number, vocab: number, seed: number): Row[] {
  let s = seed + 1;
  const next = () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s;
  };
  return Array.from({ length: batch }, () => {
    const ids = Array.from({ length: seq }, () => 3 + (next() % (vocab - 3)));
    return { ids, mask: ids.map(() => 1), labels: ids, tokens: seq - 1 };
  });
}

/**
 * Nodes whose op type has no kernel in onnxruntime-web's WebGPU (JSEP) operator table: they
 * would run on the CPU. A static count (Constant excluded: folded at load); placement in a real
 * WebGPU session also depends on types (int64 shape math stays on the CPU on purpose).
 */
function webGpuFallback(ops: Record<string, number> | undefined): Record<string, unknown> {
  const table = join(
    import.meta.dirname,
    "../node_modules/onnxruntime-web/docs/webgpu-operators.md",
  );
  if (ops === undefined || !existsSync(table)) return { measured: false };
  const supported = new Set(
    [...readFileSync(table, "utf8").matchAll(/^\| (\w+) \| ai\.onnx/gm)].map((m) => m[1]),
  );
  const missing = Object.fromEntries(
    Object.entries(ops).filter(([op]) => op !== "Constant" && !supported.has(op)),
  );
  const nodes = Object.entries(ops).reduce((n, [op, c]) => n + (op === "Constant" ? 0 : c), 0);
  return {
    nodes,
    missingOps: missing,
    fallbackNodes: Object.values(missing).reduce((a, b) => a + b, 0),
  };
}

const results: Record<string, unknown>[] = [];
for (const device of (args.devices as string).split(",") as ("cpu" | "wasm")[]) {
  const cacheDir = mkdtempSync(join(tmpdir(), "loraxs-train-bench-"));
  try {
    let t = performance.now();
    const model = await loadModel(DIR, { device, cache: await fsCache(cacheDir) });
    const loadMs = performance.now() - t;
    t = performance.now();
    const trainer = await OnDeviceTrainer.create(model, DIR);
    const trainSessionMs = performance.now() - t;
    const { batch, seq } = trainer.step;
    const [M, r] = model.manifest.io.R.shape as [number, number, number];
    const R = initR(M * r * r, 0, 0.01);
    const rows = randomRows(batch, seq, model.manifest.config.vocab_size, 0);
    t = performance.now();
    await trainer.step.run(rows, R);
    const firstStepMs = performance.now() - t;
    const stepMs: number[] = [];
    for (let i = 0; i < STEPS; i++) {
      t = performance.now();
      await trainer.step.run(rows, R);
      stepMs.push(performance.now() - t);
    }
    const fwdMs: number[] = [];
    for (let i = 0; i < Math.max(1, Math.min(STEPS, 3)); i++) {
      t = performance.now();
      await model.forward(rows.map((row) => row.ids));
      fwdMs.push(performance.now() - t);
    }
    const step = median(stepMs);
    const tokensPerStep = batch * (seq - 1);
    const stepsFor = Math.ceil((TARGET_TOKENS * EPOCHS) / tokensPerStep);
    const row = {
      device,
      model: model.manifest.id,
      layers: model.manifest.config.num_layers,
      batch,
      seq,
      loadModelMs: Math.round(loadMs),
      trainSessionMs: Math.round(trainSessionMs),
      firstStepMs: Math.round(firstStepMs),
      stepMs: Math.round(step),
      forwardMs: Math.round(median(fwdMs)),
      trainTokensPerS: Math.round((tokensPerStep / step) * 1000 * 10) / 10,
      peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
      webgpuStatic: webGpuFallback(
        (trainer.info.onnx_train as { ops?: Record<string, number> }).ops,
      ),
      personalize: {
        tokens: TARGET_TOKENS,
        epochs: EPOCHS,
        steps: stepsFor,
        minutes: Math.round(((stepsFor * step) / 60000) * 10) / 10,
        extrapolated: true,
      },
    };
    console.log(JSON.stringify(row));
    results.push(row);
    await trainer.dispose();
    await model.dispose();
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}
const report = { cpus: cpus().length, cpu: cpus()[0]?.model, steps: STEPS, results };
if (args.out !== undefined) writeFileSync(args.out, `${JSON.stringify(report, null, 2)}\n`);
