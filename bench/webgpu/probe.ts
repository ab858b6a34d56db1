// Where a WebGPU decode step goes, on a real GPU:
// 1. the floor: a trivial kernel dispatched N times through Dawn's Node binding (one pass; a pass
//    each; a submit every 16, as onnxruntime flushes), wall time to the queue's completion;
// 2. per graph, a bare greedy decode (bench/webgpu/raw.ts) counted (dispatches, passes, submits,
//    buffer writes per step) and then timed per kernel with timestamp queries (gpu-trace.ts).
//   node --experimental-strip-types bench/webgpu/probe.ts --root <dir with webgpu/> --model <folder>
//     --graphs plain.onnx,q4/model.q4w-plain.onnx [--prompt 128] [--tokens 16] [--out probe.json]
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { median, round } from "../../harness/stats.ts";
import type { Ort, Tensor } from "../../src/client/backend/index.ts";
import { installDawn } from "./dawn.ts";
import { countsPerStep, GpuTrace } from "./gpu-trace.ts";
import { prefillChunkOf, rawDecode } from "./raw.ts";

const { values: a } = parseArgs({
  options: {
    root: { type: "string" },
    model: { type: "string" },
    graphs: { type: "string", default: "q4/model.q4w-plain.onnx" },
    prompt: { type: "string", default: "128" },
    tokens: { type: "string", default: "16" },
    dispatches: { type: "string", default: "1500" },
    /** Also run each GroupQueryAttention graph over a fixed KV cache of this many rows (raw.ts). */
    "cache-rows": { type: "string" },
    /** onnxruntime-web's WebGPU validation mode for the process (its first session sets it). */
    validation: { type: "string", default: "basic" },
    out: { type: "string" },
  },
});
const log = (...x: unknown[]) => console.error("[probe]", ...x);
const adapter = await installDawn(a.root as string, [
  "disable-dawn-features=timestamp_quantization",
]);
if (adapter === null) throw new Error("no WebGPU adapter");
const trace = new GpuTrace();
const ort = (await import("onnxruntime-web/webgpu")) as unknown as Ort;
ort.env.wasm.numThreads = 1;
const MODEL = a.model as string;
const man = JSON.parse(readFileSync(join(MODEL, "manifest.json"), "utf8"));
const kv = {
  layers: man.config.num_layers as number,
  kvHeads: man.config.num_kv_heads as number,
  headDim: man.config.head_dim as number,
};
const V = man.config.vocab_size as number;
const promptIds = Array.from({ length: Number(a.prompt) }, (_, i) => (i * 7919 + 13) % V);
const newTokens = Number(a.tokens);
const report: Record<string, unknown> = {
  adapter,
  prompt: promptIds.length,
  tokens: newTokens,
  validation: a.validation,
};

// WebGPU's flag values (the globals exist in Dawn's binding, not in the DOM types).
const USAGE = { STORAGE: 0x0080, COPY_SRC: 0x0004, COPY_DST: 0x0008 };

async function session(graph: string) {
  const path = join(MODEL, graph);
  const dir = dirname(path);
  // The data files the graph names (its bytes hold each location string).
  const bytes = readFileSync(path);
  const external = readdirSync(dir)
    .filter((f) => f.includes(".data") && bytes.includes(Buffer.from(f)))
    .map((f) => ({ path: f, data: new Uint8Array(readFileSync(join(dir, f))) }));
  const s = await ort.InferenceSession.create(new Uint8Array(bytes), {
    executionProviders: [{ name: "webgpu", validationMode: a.validation } as never],
    graphOptimizationLevel: "all",
    externalData: external,
    // Every output stays on the GPU: the KV cache between steps, the logits until read back.
    preferredOutputLocation: "gpu-buffer",
  });
  return { s, inputs: [...s.inputNames], chunk: prefillChunkOf(bytes) };
}

/** R in a GPU buffer, as the client keeps it (small values, seeded). */
function gpuR(): Tensor {
  const dims = man.io.R.shape as number[];
  const data = new Float32Array(dims.reduce((x, y) => x * y, 1)).map((_, i) => Math.sin(i) * 0.02);
  const dev = ort.env.webgpu.device as unknown as GPUDevice;
  const b = dev.createBuffer({
    size: data.byteLength,
    usage: USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST,
  });
  dev.queue.writeBuffer(b, 0, data);
  return ort.Tensor.fromGpuBuffer(b as never, {
    dataType: "float32",
    dims,
    dispose: () => b.destroy(),
  }) as Tensor;
}

const graphs: Record<string, unknown>[] = [];
// The first graph with R that runs: every later graph with R is compared with its first logits.
let reference: { graph: string; logits: Float32Array } | undefined;
const maxDiff = (x: Float32Array, y: Float32Array) =>
  x.reduce((m, v, i) => Math.max(m, Math.abs(v - (y[i] as number))), 0);
const runs = (a.graphs as string)
  .split(",")
  .filter((g) => existsSync(join(MODEL, g)))
  .flatMap((g) =>
    a["cache-rows"] !== undefined && prefillChunkOf(readFileSync(join(MODEL, g))) !== undefined
      ? [`${g}`, `${g}#fixed`]
      : [g],
  );
for (const run of runs) {
  const [graph, mode] = run.split("#") as [string, string | undefined];
  const cacheRows = mode === "fixed" ? Number(a["cache-rows"]) : undefined;
  try {
    const { s, inputs, chunk } = await session(graph);
    const extra: Record<string, Tensor> = inputs.includes("R") ? { R: gpuR() } : {};
    await rawDecode(ort, s as never, kv, promptIds, newTokens, extra, { chunk, cacheRows }); // warm every KV length
    // Counted from the first decode step on (the prompt's runs left out).
    const plain = await rawDecode(ort, s as never, kv, promptIds, newTokens, extra, {
      chunk,
      cacheRows,
      before: (step) => {
        if (step === 1) trace.resetCounts();
      },
    });
    const counts = trace.resetCounts();
    let versus: Record<string, unknown> | null = null;
    if (inputs.includes("R") && plain.firstLogits !== undefined) {
      if (reference === undefined) reference = { graph: run, logits: plain.firstLogits };
      else
        versus = {
          graph: reference.graph,
          firstLogitsMaxAbsDiff: maxDiff(plain.firstLogits, reference.logits),
        };
    }
    const perStep = countsPerStep(counts, newTokens - 1);
    let timed: Record<string, unknown> = { skipped: "no timestamp-query" };
    if (trace.canTime) {
      // Decode steps only (the prompt's run is not timed); timestamps read after each step.
      const spans: number[] = [];
      const sums: number[] = [];
      trace.kernelTimes(true);
      const steps = Math.min(8, newTokens - 1);
      await rawDecode(ort, s as never, kv, promptIds, steps + 1, extra, {
        chunk,
        cacheRows,
        before: (step) => {
          trace.timing = step > 0;
        },
        after: async (step) => {
          const c = await trace.collect();
          if (step > 0) {
            spans.push(c.spanMs);
            sums.push(c.kernelMs);
          } else trace.kernelTimes(true);
        },
      });
      trace.timing = false;
      timed = {
        steps,
        gpuSpanMsPerStep: round(median(spans), 3),
        kernelMsPerStep: round(median(sums), 3),
        kernels: trace
          .kernelTimes(true)
          .slice(0, 30)
          .map((k) => ({
            ...k,
            gpuMs: round(k.gpuMs / steps, 4),
            dispatches: k.dispatches / steps,
          })),
      };
    }
    graphs.push({
      graph: run,
      chunk: chunk ?? null,
      cacheRows: cacheRows ?? null,
      tokens: plain.tokens,
      versus,
      tokensPerS: round(plain.tokensPerSecond, 2),
      split: plain.split,
      perDecodeStep: perStep,
      timed,
    });
    log(graph, JSON.stringify(graphs.at(-1)).slice(0, 400));
    for (const t of Object.values(extra)) t.dispose();
    await s.release();
  } catch (error) {
    graphs.push({ graph: run, failed: String(error).slice(0, 400) });
    log(graph, "failed", String(error));
  }
}
report.graphs = graphs;

// The floor: a trivial kernel, N dispatches, on onnxruntime's own device.
const dev = ort.env.webgpu.device as unknown as GPUDevice;
const module = dev.createShaderModule({
  code: "@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { x[g.x] = x[g.x] + 1.0; }",
});
const pipeline = dev.createComputePipeline({
  layout: "auto",
  compute: { module, entryPoint: "main" },
});
const buf = dev.createBuffer({ size: 64 * 4, usage: USAGE.STORAGE | USAGE.COPY_DST });
const group = dev.createBindGroup({
  layout: pipeline.getBindGroupLayout(0),
  entries: [{ binding: 0, resource: { buffer: buf } }],
});
const N = Number(a.dispatches);
async function floor(passEvery: number, submitEvery: number): Promise<number> {
  const t0 = performance.now();
  let e = dev.createCommandEncoder();
  let pass = e.beginComputePass();
  for (let i = 0; i < N; i++) {
    if (i > 0 && i % passEvery === 0) {
      pass.end();
      if (i % submitEvery === 0) {
        dev.queue.submit([e.finish()]);
        e = dev.createCommandEncoder();
      }
      pass = e.beginComputePass();
    }
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(1);
  }
  pass.end();
  dev.queue.submit([e.finish()]);
  await dev.queue.onSubmittedWorkDone();
  return ((performance.now() - t0) * 1000) / N;
}
const floors: Record<string, number> = {};
for (const [name, passEvery, submitEvery] of [
  ["one pass", N, N],
  ["a pass each", 1, N],
  ["a pass each, submit every 16", 1, 16],
  ["one pass per 16, submit each", 16, 16],
] as [string, number, number][]) {
  const xs: number[] = [];
  for (let r = 0; r < 5; r++) xs.push(await floor(passEvery, submitEvery));
  floors[name] = round(median(xs.slice(1)), 2);
}
report.floorUsPerDispatch = { dispatches: N, ...floors };
log("floor µs per dispatch", JSON.stringify(floors));
report.shaders = Object.fromEntries(trace.sources);
const text = JSON.stringify(report, null, 1);
if (a.out !== undefined) writeFileSync(a.out, text);
console.log(text.slice(0, 6000));
