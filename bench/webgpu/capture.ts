// Graph capture on WebGPU: the fixed-cache graph (`q4ws` / `fusedws`, docs/client.md "Graph capture")
// replayed by onnxruntime-web (`enableGraphCapture`) against the same graph run uncaptured and the
// shipped plain graph (`q4w` / `fusedw`): greedy tokens, max logit difference, ms per decode step.
//   node --experimental-strip-types bench/webgpu/capture.ts --root <dir with webgpu/> --model <folder>
//     [--static model.q4ws] [--plain model.q4w] [--prompt 16] [--tokens 32] [--opt all] [--out capture.json]
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { installDawn } from "./dawn.ts";
import { type Counts, GpuTrace, countsPerStep as perStep } from "./gpu-trace.ts";

const { values: a } = parseArgs({
  options: {
    root: { type: "string" },
    model: { type: "string" },
    static: { type: "string", default: "model.q4ws" },
    plain: { type: "string", default: "model.q4w" },
    prompt: { type: "string", default: "16" },
    tokens: { type: "string", default: "32" },
    /** onnxruntime's graph optimization level for both graphs (its kernels differ per level). */
    opt: { type: "string", default: "all" },
    out: { type: "string" },
  },
});
const adapter = await installDawn(a.root as string, [
  "disable-dawn-features=timestamp_quantization",
]);
if (adapter === null) throw new Error("no WebGPU adapter");
// What each decode step asks of the GPU (dispatches, passes, submits), and the GPU time of the last
// few steps of each fixed-cache run (timestamp queries; bench/webgpu/gpu-trace.ts).
const trace = new GpuTrace();
const TIMED_STEPS = 3;
const ort = await import("onnxruntime-web/webgpu");
ort.env.wasm.numThreads = 1;
const dir = a.model as string;
const man = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
const c = man.config;
const [layers, kvh, hd, V] = [c.num_layers, c.num_kv_heads, c.head_dim, c.vocab_size];
const rDims = man.io.R.shape as number[];
const rSize = rDims.reduce((x, y) => x * y, 1);
const R = new Float32Array(rSize).map((_, i) => Math.sin(i) * 0.05);
const promptLen = Number(a.prompt);
const steps = Number(a.tokens);
const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919 + 13) % V);
const load = (stem: string, options: Record<string, unknown>) =>
  ort.InferenceSession.create(readFileSync(join(dir, `${stem}.onnx`)), {
    executionProviders: ["webgpu"],
    graphOptimizationLevel: a.opt as "all" | "basic" | "extended" | "disabled",
    externalData: readdirSync(dir)
      .filter((f) => f.startsWith(`${stem}.onnx.data`))
      .map((f) => ({ path: f, data: readFileSync(join(dir, f)) })),
    ...options,
  });
const argmax = (x: Float32Array) => {
  let b = 0;
  for (let j = 1; j < x.length; j++) if ((x[j] as number) > (x[b] as number)) b = j;
  return b;
};
const maxDiff = (x: Float32Array, y: Float32Array) => {
  let e = 0;
  for (let j = 0; j < x.length; j++) e = Math.max(e, Math.abs((x[j] as number) - (y[j] as number)));
  return e;
};

// The shipped plain graph: prompt in one run, then one token a step (logits read back each step).
async function plainRun(): Promise<{
  logits: Float32Array[];
  tokens: number[];
  stepMs: number;
  counts: Record<string, number>;
}> {
  const s = await load(a.plain as string, {});
  let past: Record<string, unknown> = {};
  for (let i = 0; i < layers; i++)
    for (const k of ["key", "value"])
      past[`past_key_values.${i}.${k}`] = new ort.Tensor("float32", new Float32Array(0), [
        1,
        kvh,
        0,
        hd,
      ]);
  let input = prompt;
  let len = 0;
  const logits: Float32Array[] = [];
  const tokens: number[] = [];
  let t = 0;
  for (let step = 0; step < steps; step++) {
    if (step === 1) {
      t = performance.now();
      trace.resetCounts();
    }
    const out = await s.run({
      input_ids: new ort.Tensor("int64", BigInt64Array.from(input.map(BigInt)), [1, input.length]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(len + input.length).fill(1n), [
        1,
        len + input.length,
      ]),
      R: new ort.Tensor("float32", R, rDims),
      ...past,
    } as never);
    len += input.length;
    const lg = (out.logits as { data: Float32Array }).data.slice((input.length - 1) * V);
    logits.push(lg);
    tokens.push(argmax(lg));
    past = {};
    for (let i = 0; i < layers; i++)
      for (const k of ["key", "value"])
        past[`past_key_values.${i}.${k}`] = out[`present.${i}.${k}`];
    input = [tokens.at(-1) as number];
  }
  const stepMs = (performance.now() - t) / Math.max(1, steps - 1);
  const counts = perStep(trace.resetCounts(), Math.max(1, steps - 1));
  await s.release();
  return { logits, tokens, stepMs, counts };
}

// WebGPU's flag values (GPUBufferUsage, GPUMapMode): the globals exist in Dawn's binding, not in the
// DOM types this file is checked with.
const [MAP_READ, COPY_DST, MAP_MODE_READ] = [0x0001, 0x0008, 0x0001];

// The fixed-cache graph, one token a run; every buffer from onnxruntime itself (see docs/client.md).
async function staticRun(capture: boolean): Promise<{
  logits: Float32Array[];
  tokens: number[];
  stepMs: number;
  promptMs: number;
  counts: Record<string, number>;
  gpu: { spanMs: number; kernelMs: number }[];
}> {
  const s = await load(a.static as string, { enableGraphCapture: capture });
  const maskMeta = s.inputMetadata.find((m) => m.name === "attention_mask");
  const L = (
    maskMeta !== undefined && "shape" in maskMeta ? maskMeta.shape[1] : undefined
  ) as number;
  if (promptLen + steps + TIMED_STEPS > L)
    throw new Error(
      `prompt + tokens ${promptLen + steps} exceed the cache's ${L - TIMED_STEPS} rows`,
    );
  const dev = (await ort.env.webgpu.device) as GPUDevice;
  const alloc = await ort.InferenceSession.create(ALLOC_GRAPH, {
    executionProviders: ["webgpu"],
    preferredOutputLocation: "gpu-buffer",
  });
  const held: { dispose(): void }[] = [];
  const buf = async (bytes: number): Promise<GPUBuffer> => {
    const o = await alloc.run({
      shape: new ort.Tensor("int64", BigInt64Array.of(BigInt(Math.ceil(bytes / 4))), [1]),
    });
    const y = o.y as unknown as { gpuBuffer: GPUBuffer; dispose(): void };
    held.push(y);
    return y.gpuBuffer;
  };
  const T = (b: GPUBuffer, type: "int32" | "float32", dims: number[]) =>
    ort.Tensor.fromGpuBuffer(b, { dataType: type, dims });
  const [ids, pos, mask, rb, lb] = [
    await buf(4),
    await buf(4),
    await buf(4 * L),
    await buf(rSize * 4),
    await buf(V * 4),
  ];
  dev.queue.writeBuffer(rb, 0, R);
  dev.queue.writeBuffer(mask, 0, new Int32Array(L));
  const feeds: Record<string, unknown> = {
    input_ids: T(ids, "int32", [1, 1]),
    position_ids: T(pos, "int32", [1, 1]),
    attention_mask: T(mask, "int32", [1, L]),
    R: T(rb, "float32", rDims),
  };
  const fetches: Record<string, unknown> = { logits: T(lb, "float32", [1, 1, V]) };
  const rows: [GPUBuffer, GPUBuffer][] = [];
  for (let i = 0; i < layers; i++)
    for (const k of ["key", "value"]) {
      const cache = await buf(kvh * L * hd * 4);
      dev.queue.writeBuffer(cache, 0, new Float32Array(kvh * L * hd));
      const row = await buf(kvh * hd * 4);
      feeds[`past_key_values.${i}.${k}`] = T(cache, "float32", [1, kvh, L, hd]);
      fetches[`present.${i}.${k}`] = T(row, "float32", [1, kvh, 1, hd]);
      rows.push([row, cache]);
    }
  const staging = dev.createBuffer({
    size: V * 4,
    usage: MAP_READ | COPY_DST,
  });
  const logits: Float32Array[] = [];
  const tokens: number[] = [];
  const seq = [...prompt];
  let t0 = performance.now();
  let promptMs = 0;
  let t = 0;
  let stepMsAt = 0;
  const last = promptLen + steps - 1;
  let counts: Counts | undefined;
  const gpu: { spanMs: number; kernelMs: number }[] = [];
  for (let p = 0; p < last + TIMED_STEPS; p++) {
    if (p === promptLen) {
      t = performance.now();
      trace.resetCounts();
    }
    if (p === last) counts = trace.resetCounts();
    // Past the timed loop: a few steps more with timestamps (they slow a step; not in stepMs).
    trace.timing = p >= last;
    dev.queue.writeBuffer(ids, 0, Int32Array.of(seq[p] as number));
    dev.queue.writeBuffer(pos, 0, Int32Array.of(p));
    await s.run(feeds as never, fetches as never);
    const e = dev.createCommandEncoder();
    for (const [row, cache] of rows)
      for (let h = 0; h < kvh; h++)
        e.copyBufferToBuffer(row, h * hd * 4, cache, (h * L + p) * hd * 4, hd * 4);
    if (p >= promptLen - 1) e.copyBufferToBuffer(lb, 0, staging, 0, V * 4);
    dev.queue.submit([e.finish()]);
    dev.queue.writeBuffer(mask, 4 * p, Int32Array.of(1));
    if (p >= promptLen - 1) {
      await staging.mapAsync(MAP_MODE_READ);
      const lg = new Float32Array(staging.getMappedRange().slice(0));
      staging.unmap();
      logits.push(lg);
      tokens.push(argmax(lg));
      seq.push(tokens.at(-1) as number);
      if (p === promptLen - 1) promptMs = performance.now() - t0;
    }
    if (p === last - 1) stepMsAt = performance.now();
    if (p >= last) gpu.push(await trace.collect());
  }
  trace.timing = false;
  const stepMs = (stepMsAt - t) / Math.max(1, steps - 1);
  t0 = 0;
  staging.destroy();
  await s.release();
  for (const h of held) h.dispose();
  await alloc.release();
  return {
    logits: logits.slice(0, steps),
    tokens: tokens.slice(0, steps),
    stepMs,
    promptMs,
    counts: perStep(counts as Counts, Math.max(1, steps - 1)),
    gpu,
  };
}

// Expand(0, shape): its outputs are buffers onnxruntime allocated, which stay registered (docs/client.md).
const ALLOC_GRAPH = Uint8Array.from(
  atob(
    "CAoSC2xvcmF4cy1lZGdlOlwKGAoEemVybwoFc2hhcGUSAXkiBkV4cGFuZBIHYnVmZmVycyoQCAEQAUIEemVyb0oEAAAAAFoTCgVzaGFwZRIKCggIBxIECgIIAWIQCgF5EgsKCQgBEgUKAxIBbkIECgAQFQ==",
  ),
  (ch) => ch.charCodeAt(0),
);

const plain = await plainRun();
const uncaptured = await staticRun(false);
const captured = await staticRun(true);
const diff = (x: Float32Array[]) =>
  Math.max(...x.map((lg, i) => maxDiff(lg, plain.logits[i] as Float32Array)));
/** One static-cache run against the plain graph: speed, logit difference, same greedy tokens. */
const versusPlain = (run: typeof captured) => ({
  graph: a.static,
  msPerStep: run.stepMs,
  tokensPerS: 1000 / run.stepMs,
  promptMs: run.promptMs,
  maxAbsDiff: diff(run.logits),
  greedyEqual: run.tokens.join() === plain.tokens.join(),
  perDecodeStep: run.counts,
  timedSteps: run.gpu,
});
const report = {
  adapter,
  prompt: promptLen,
  tokens: steps,
  plain: {
    graph: a.plain,
    msPerStep: plain.stepMs,
    tokensPerS: 1000 / plain.stepMs,
    perDecodeStep: plain.counts,
  },
  uncaptured: versusPlain(uncaptured),
  captured: versusPlain(captured),
};
console.log(JSON.stringify(report, null, 1));
if (a.out !== undefined) writeFileSync(a.out, JSON.stringify(report, null, 1));
