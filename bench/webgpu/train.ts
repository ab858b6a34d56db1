// On-device training on a real GPU: the client's own training code (src/client/train) with
// onnxruntime-web's WebGPU EP in Node through Dawn, on the SmolLM2-135M-shaped model's step graph
// (model.train.onnx, 1 x 128 tokens, weights shared with model.onnx.data).
// The first available device of --devices (webgpu when there is an adapter) gets everything:
// node placement (onnxruntime's verbose session log: nodes per execution provider and the op
// types not on the GPU), model load, step session, step time (median after warm-up), training
// tokens/s, forward time, GPU memory (nvidia-smi, when there is one) and RSS, and a timed
// personalize() over ~20k tokens of State of the Union text (early stopping off) when it fits the
// time budget (else extrapolated from the step, and marked so). Later devices (wasm) get the
// step only, checked against the first device's loss and dL/dR.
//
// On the GPU machine (bench/webgpu/run.sh --train unpacks the carry folder):
//   node train.mjs --root <unpacked> --model <model folder> --texts sotu.json [--out r.json]
// Built by `npm run bench:webgpu -- build --train` (bench/webgpu/carry.mjs).
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { median, round } from "../../harness/stats.ts";
import { loadModel, memoryCache, selectBackend } from "../../src/client/index.ts";
import {
  createTrainStep,
  initR,
  loadTrainFiles,
  OnDeviceTrainer,
  type Row,
  rowsFromTexts,
} from "../../src/client/train/index.ts";
import { installDawn, tryDawn } from "./dawn.ts";

const T0 = performance.now();
const { values: args } = parseArgs({
  options: {
    root: { type: "string" },
    model: { type: "string" },
    texts: { type: "string" },
    devices: { type: "string", default: "webgpu,wasm" },
    warmup: { type: "string", default: "2" },
    steps: { type: "string", default: "10" },
    "wasm-steps": { type: "string", default: "2" },
    /** Tokens of the personalize run (one epoch, batch x seq rows). */
    tokens: { type: "string", default: "20000" },
    lr: { type: "string", default: "5e-3" },
    /** Seconds this process may take in all; later stages are skipped (and reported so). */
    budget: { type: "string", default: "250" },
    /** Verbose session log for the node placement (a second session of the step graph). */
    placement: { type: "string", default: "yes" },
    "placement-child": { type: "string" },
    out: { type: "string" },
  },
});
if (args.model === undefined) throw new Error("--model <prepared folder with model.train.onnx>");
const MODEL = args.model;
const DEVICES = (args.devices ?? "").split(",").filter(Boolean);
const WARMUP = Number(args.warmup);
const STEPS = Number(args.steps);
const WASM_STEPS = Number(args["wasm-steps"]);
const TOKENS = Number(args.tokens);
const LR = Number(args.lr);
const BUDGET_MS = Number(args.budget) * 1000;
if (args["placement-child"] !== undefined) {
  await placementChild(args["placement-child"] as "webgpu" | "wasm");
}

const log = (...a: unknown[]) =>
  console.log(`[${((performance.now() - T0) / 1000).toFixed(1)}s]`, ...a);
const left = () => BUDGET_MS - (performance.now() - T0);
const results: Record<string, unknown> = {
  node: process.version,
  started: new Date().toISOString(),
};
const save = () => {
  if (args.out !== undefined) writeFileSync(args.out, `${JSON.stringify(results, null, 1)}\n`);
};

// ---- GPU memory: nvidia-smi sampled every 200 ms (total used on the GPU; ours is the only process)
const SMI = ["nvidia-smi", "/usr/local/nvidia/bin/nvidia-smi"].find((p) => {
  try {
    execFileSync(p, ["-L"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
});
let gpuPeak = 0;
let gpuNow = 0;
const gpuBaseline = (() => {
  if (SMI === undefined) return null;
  const q = execFileSync(SMI, ["--query-gpu=memory.used", "--format=csv,noheader,nounits"]);
  return Number(String(q).split("\n")[0]);
})();
const sampler =
  SMI === undefined
    ? null
    : spawn(SMI, ["--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "200"], {
        stdio: ["ignore", "pipe", "ignore"],
      });
sampler?.stdout.on("data", (b: Buffer) => {
  for (const line of String(b).split("\n")) {
    const mb = Number(line.trim().split(",")[0]);
    if (line.trim() !== "" && Number.isFinite(mb)) {
      gpuNow = mb;
      gpuPeak = Math.max(gpuPeak, mb);
    }
  }
});
sampler?.unref();
/** GPU MiB now and peak so far (minus what was in use before we started), and this process's RSS. */
function memory(): Record<string, number | null> {
  const base = gpuBaseline ?? 0;
  return {
    gpuMiB: SMI === undefined ? null : gpuNow - base,
    gpuPeakMiB: SMI === undefined ? null : gpuPeak - base,
    rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}
const resetPeak = () => {
  gpuPeak = gpuNow;
};

// ---- WebGPU through Dawn
const adapter = DEVICES.includes("webgpu") ? await tryDawn(args.root, log) : null;
results.adapter = adapter;
log("ADAPTER", JSON.stringify(adapter));

// ---- Training text: ~TOKENS tokens of one president's addresses (cut with the model's tokenizer)
const texts: string[] =
  args.texts === undefined
    ? []
    : (JSON.parse(readFileSync(args.texts, "utf8")) as { texts: string[] }).texts;

/**
 * onnxruntime's verbose session log lists where each node runs (VerifyEachNodeIsAssignedToAnEp,
 * after the graph optimizations). The WASM module writes its log to the process's stdout itself,
 * so a child process (this script with --placement-child) creates a session of the step graph
 * with logSeverityLevel 0, and its output is parsed here: nodes per provider, and per op type for
 * every provider other than the GPU's.
 */
function placement(ep: "webgpu" | "wasm") {
  const t = performance.now();
  // The log goes to a file: a pipe can refuse the WASM module's synchronous writes (EAGAIN).
  const logFile = join(mkdtempSync(join(tmpdir(), "placement-")), `${ep}.log`);
  const fd = openSync(logFile, "w");
  const child = spawnSync(
    process.execPath,
    [
      process.argv[1] as string,
      "--placement-child",
      ep,
      "--model",
      MODEL,
      ...(args.root === undefined ? [] : ["--root", args.root]),
    ],
    { stdio: ["ignore", fd, fd] },
  );
  closeSync(fd);
  const text = readFileSync(logFile, "utf8").split("\n");
  rmSync(logFile, { force: true });
  const perEp: Record<string, number> = {};
  const opsPerEp: Record<string, Record<string, number>> = {};
  let current: string | undefined;
  const placed: string[] = [];
  for (const line of text) {
    if (!line.includes("VerifyEachNodeIsAssignedToAnEp")) continue;
    placed.push(line.replace(/^.*VerifyEachNodeIsAssignedToAnEp\]/, ""));
    const head = /placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(line);
    if (head !== null) {
      current = head[1] as string;
      perEp[current] = Number(head[2]);
      continue;
    }
    const node = /\]\s{2,}(\S+) \((.*)\)\s*$/.exec(line);
    if (node !== null && current !== undefined) {
      const ops = opsPerEp[current] ?? {};
      ops[node[1] as string] = (ops[node[1] as string] ?? 0) + 1;
      opsPerEp[current] = ops;
    }
  }
  const warnings = text
    .filter((l) => /\[W:onnxruntime/.test(l))
    .map((l) => l.replace(/^.*?\] /, "").slice(0, 300));
  const done = text.find((l) => l.startsWith("PLACEMENT-CHILD "));
  const gpuEp = Object.keys(perEp).find((k) => /WebGpu|Js/i.test(k));
  return {
    ep,
    ms: Math.round(performance.now() - t),
    child: done === undefined ? `exit ${child.status}: ${text.slice(-5).join(" | ")}` : done,
    logLines: text.length,
    nodesAfterOptimization: Object.values(perEp).reduce((a, b) => a + b, 0),
    perProvider: perEp,
    cpuNodes: Object.entries(perEp)
      .filter(([k]) => k !== gpuEp)
      .reduce((a, [, v]) => a + v, 0),
    opsPerProvider: Object.fromEntries(Object.entries(opsPerEp).filter(([k]) => k !== gpuEp)),
    placementLines: placed.filter((l) => !/WebGpu/.test(l) || /placed on/.test(l)).slice(0, 200),
    warnings: [...new Set(warnings)].slice(0, 10),
  };
}

/** --placement-child <ep>: one verbose session of the step graph; the parent reads the log. */
async function placementChild(ep: "webgpu" | "wasm") {
  if (ep === "webgpu" && args.root !== undefined) await installDawn(args.root);
  const backend = await selectBackend({ device: ep });
  const t = performance.now();
  const session = await backend.ort.InferenceSession.create(
    new Uint8Array(readFileSync(join(MODEL, "model.train.onnx"))),
    {
      executionProviders: [ep],
      graphOptimizationLevel: "all",
      logSeverityLevel: 0,
      logVerbosityLevel: 0,
      externalData: [
        {
          path: "model.onnx.data",
          data: new Uint8Array(readFileSync(join(MODEL, "model.onnx.data"))),
        },
      ],
    },
  );
  console.log(`PLACEMENT-CHILD session ${Math.round(performance.now() - t)} ms`);
  await session.release();
  process.exit(0);
}
/** Rows of real text for the timed steps (the same compute as random ids; 1 x 128 tokens). */
function firstRows(rows: Row[], batch: number): Row[] {
  return Array.from({ length: batch }, (_, i) => rows[i % rows.length] as Row);
}

/** Texts cut to `tokens` tokens (the last one decoded back from its first ids). */
function cutTexts(
  encode: (t: string) => number[],
  decode: (ids: number[]) => string,
  all: string[],
  tokens: number,
) {
  const out: string[] = [];
  let n = 0;
  for (const t of all) {
    const ids = encode(t);
    if (n + ids.length + 1 <= tokens) {
      out.push(t);
      n += ids.length + 1; // + EOS
      continue;
    }
    const keep = tokens - n - 1;
    if (keep > 1) out.push(decode(ids.slice(0, keep)));
    break;
  }
  return out;
}

const cache = memoryCache();
/** The first device's loss and dL/dR at the timed rows and R: later devices are checked against it. */
let reference: { device: string; loss: number; grad: Float32Array } | undefined;
let shared:
  | {
      files: Awaited<ReturnType<typeof loadTrainFiles>>;
      id: string;
      rDims: [number, number, number];
      rows: Row[];
    }
  | undefined;

/**
 * The first available device gets everything: placement, load, step times, forward time and
 * the personalize run; later devices only the step (see `stepOnly`).
 */
async function full(device: "webgpu" | "wasm", r: Record<string, unknown>, reserveMs: number) {
  if (args.placement === "yes") {
    r.placement = placement(device);
    const p = r.placement as { cpuNodes: number; perProvider: unknown; child: string };
    log("placement:", JSON.stringify(p.perProvider), "cpu nodes", p.cpuNodes, p.child);
    save();
  }
  let t = performance.now();
  const model = await loadModel(MODEL, { device, cache });
  r.loadModelMs = Math.round(performance.now() - t);
  r.reason = model.backend.reason;
  r.memoryAfterLoad = memory();
  log("model loaded", r.loadModelMs, "ms;", model.backend.reason);
  const [M, rank] = model.manifest.io.R.shape as [number, number, number];
  const seq = model.manifest.onnx_train?.shapes.seq ?? 128;
  const tok = model.tokenizer;
  if (tok === undefined) throw new Error("the model has no tokenizer");
  const eos = [model.manifest.config.eos_token_id].flat()[0] ?? undefined;
  const encode = (s: string) => tok.encode(s, { addSpecialTokens: false });
  const cut = cutTexts(encode, (ids) => tok.decode(ids), texts, TOKENS);
  if (cut.length === 0) cut.push("On-device training benchmark. ".repeat(64));
  const rows = rowsFromTexts(encode, cut, seq, eos ?? undefined, eos ?? 0);
  shared = {
    files: await loadTrainFiles(
      MODEL,
      { id: model.manifest.id, factors: model.manifest.factors.sha256 },
      cache,
    ),
    id: model.manifest.id,
    rDims: [M, rank, rank],
    rows,
  };
  t = performance.now();
  const trainer = await OnDeviceTrainer.create(model, MODEL);
  r.trainSessionMs = Math.round(performance.now() - t);
  log("step session", r.trainSessionMs, "ms");
  const { batch } = trainer.step;
  const R = initR(M * rank * rank, 0, 0.01);
  const stepRows = firstRows(rows, batch);
  resetPeak();
  const warm: number[] = [];
  for (let i = 0; i < WARMUP; i++) {
    t = performance.now();
    await trainer.step.run(stepRows, R);
    warm.push(performance.now() - t);
  }
  const stepMs: number[] = [];
  let loss = Number.NaN;
  for (let i = 0; i < STEPS; i++) {
    t = performance.now();
    const out = await trainer.step.run(stepRows, R);
    stepMs.push(performance.now() - t);
    loss = out.loss;
    reference = { device, loss, grad: out.grad };
  }
  const fwd: number[] = [];
  for (let i = 0; i < Math.min(3, Math.max(1, STEPS)); i++) {
    t = performance.now();
    await model.forward(stepRows.map((x) => x.ids));
    fwd.push(performance.now() - t);
  }
  const step = median(stepMs);
  const tokensPerStep = batch * (seq - 1);
  Object.assign(r, {
    batch,
    seq,
    warmupMs: warm.map((x) => Math.round(x)),
    stepMs: round(step),
    stepRunsMs: stepMs.map((x) => round(x)),
    loss,
    forwardMs: round(median(fwd)),
    trainTokensPerS: round((tokensPerStep / step) * 1000),
    memoryAfterSteps: memory(),
  });
  log(
    `${device} step ${round(step)} ms (median of ${STEPS} after ${WARMUP} warm-up: ${warm.map((x) => Math.round(x)).join(", ")} ms); forward ${round(median(fwd))} ms; ${r.trainTokensPerS} training tokens/s`,
  );
  save();

  // personalize() on ~TOKENS tokens: one epoch of batch x seq rows, early stopping off.
  const steps = Math.ceil(rows.length / batch);
  const estimate = steps * step * 1.1 + 5000;
  const plan = {
    tokens: rows.reduce((a, x) => a + x.tokens, 0),
    rows: rows.length,
    steps,
    lr: LR,
    estimateMs: Math.round(estimate),
  };
  if (estimate < left() - reserveMs) {
    let lastLog = performance.now();
    const perStep: number[] = [];
    t = performance.now();
    const res = await trainer.personalize(cut, {
      steps,
      lr: LR,
      warmupSteps: Math.max(1, Math.round(0.05 * steps)),
      heldOut: 0,
      patience: 0,
      onProgress: (e) => {
        if (e.kind !== "step") return;
        perStep.push(e.ms);
        if (performance.now() - lastLog > 10_000) {
          lastLog = performance.now();
          log(`  personalize step ${e.step}/${e.steps} loss ${e.loss.toFixed(3)}`);
        }
      },
    });
    const ms = performance.now() - t;
    const mean = (xs: number[]) => round(xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length), 4);
    r.personalize = {
      ...plan,
      measured: true,
      ms: Math.round(ms),
      minutes: round(ms / 60000, 2),
      trainTokens: res.trainTokens,
      stepsRun: res.steps,
      medianStepMs: round(median(perStep)),
      tokensPerS: round((res.trainTokens / ms) * 1000),
      meanLossFirst10: mean(res.losses.slice(0, 10)),
      meanLossLast10: mean(res.losses.slice(-10)),
      adapterBytes: res.bytes.length,
    };
    log("personalize:", JSON.stringify(r.personalize));
  } else {
    r.personalize = {
      ...plan,
      measured: false,
      extrapolated: true,
      minutes: round((steps * step) / 60000, 2),
      why: `estimate ${Math.round(estimate / 1000)} s > ${Math.round((left() - reserveMs) / 1000)} s left`,
    };
    log("personalize not run, extrapolated:", JSON.stringify(r.personalize));
  }
  r.memoryAfterPersonalize = memory();
  save();
  await trainer.dispose();
  await model.dispose();
}

/** A later device: the client's step (createTrainStep) on the same graph and weights, timed. */
async function stepOnly(device: "webgpu" | "wasm", r: Record<string, unknown>) {
  if (shared === undefined) throw new Error("stepOnly runs after full()");
  const backend = await selectBackend({ device });
  let t = performance.now();
  const step = await createTrainStep(backend, shared.files, cache, {
    id: shared.id,
    rDims: shared.rDims,
  });
  r.trainSessionMs = Math.round(performance.now() - t);
  const [M, rank] = shared.rDims;
  const R = initR(M * rank * rank, 0, 0.01);
  const rows = firstRows(shared.rows, step.batch);
  t = performance.now();
  const out = await step.run(rows, R);
  const first = performance.now() - t;
  if (reference !== undefined) {
    let worst = 0;
    let gmax = 0;
    for (let i = 0; i < out.grad.length; i++) {
      worst = Math.max(worst, Math.abs((out.grad[i] as number) - (reference.grad[i] as number)));
      gmax = Math.max(gmax, Math.abs(reference.grad[i] as number));
    }
    r.check = {
      against: reference.device,
      loss: out.loss,
      lossRelError: Math.abs(out.loss - reference.loss) / Math.abs(reference.loss),
      gradMaxAbsError: worst,
      gradRelError: worst / gmax,
    };
    log(`${device} vs ${reference.device}:`, JSON.stringify(r.check));
  }
  r.firstStepMs = Math.round(first);
  log(device, "first step", r.firstStepMs, "ms");
  const stepMs: number[] = [];
  for (let i = 0; i < WASM_STEPS && left() > first * 1.2; i++) {
    t = performance.now();
    await step.run(rows, R);
    stepMs.push(performance.now() - t);
  }
  const s = median(stepMs.length > 0 ? stepMs : [first]);
  Object.assign(r, {
    stepMs: round(s),
    stepRunsMs: stepMs.map((x) => round(x)),
    trainTokensPerS: round(((step.batch * (step.seq - 1)) / s) * 1000, 2),
    threads: device === "wasm" ? backend.ort.env.wasm.numThreads : undefined,
    memory: memory(),
    personalizeMinutesExtrapolated: round(
      (Math.ceil(shared.rows.length / step.batch) * s) / 60000,
      1,
    ),
  });
  log(`${device} step ${round(s)} ms; ${r.trainTokensPerS} training tokens/s`);
  await step.dispose();
}

let firstDone = false;
for (const device of DEVICES as ("webgpu" | "wasm")[]) {
  const r: Record<string, unknown> = {};
  results[device] = r;
  if (device === "webgpu" && adapter === null) {
    r.skipped = "no WebGPU adapter";
    log("skip webgpu: no adapter");
    continue;
  }
  try {
    if (!firstDone) {
      firstDone = true;
      // The personalize run comes before the later devices' steps: it may use their time.
      await full(device, r, 5_000);
    } else if (left() < 45_000) {
      r.skipped = `${Math.round(left() / 1000)} s left of the budget`;
      log(`skip ${device}:`, r.skipped);
    } else {
      await stepOnly(device, r);
    }
  } catch (error) {
    r.error = String(error instanceof Error ? (error.stack ?? error) : error).slice(0, 2000);
    log(`${device} failed:`, r.error);
  }
  save();
}

results.seconds = round((performance.now() - T0) / 1000);
results.memory = memory();
save();
console.log(JSON.stringify(results, null, 1));
sampler?.kill();
process.exit(0);
