// Client on a real GPU: onnxruntime-web's WebGPU EP in Node through Dawn's binding (npm
// `webgpu`), on the GPU machine, next to onnxruntime-web's WASM EP on the same machine.
// Bundled by bench/client-gpu-carry.mjs into .cache/gpu-carry/bench.mjs and run there with
// the carried Node 24:  node bench.mjs --root <unpacked carry> --model <prepared folder>
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { createRng, loadModel, memoryCache, type PersonalModel } from "../src/client/index.ts";
import { decodeAdapter, encodeAdapter } from "../src/format/index.ts";
import { caseAdapter, maxAbsDiff, readReference } from "../test/node/client/helpers/reference.ts";

const { values: args } = parseArgs({
  options: {
    root: { type: "string" },
    model: { type: "string" },
    tokens: { type: "string", default: "64" },
    repeats: { type: "string", default: "3" },
    devices: { type: "string", default: "webgpu,wasm" },
    out: { type: "string" },
    template: { type: "string", default: "models/smollm2-135m/manifest.json" },
  },
});
const TOKENS = Number(args.tokens);
const REPEATS = Number(args.repeats);
const SWAP_ROUNDS = 200;
if (args.root === undefined || args.model === undefined)
  throw new Error("--root and --model are required");
const modelDir = args.model;
ensureManifest(modelDir, args.template ?? "");

/**
 * A prepared folder whose prepare run stopped at its manifest check still has the graph, the
 * factors and the fixtures: write the manifest from the committed one of the same architecture
 * (modules, config) with this folder's digests, id and files.
 */
function ensureManifest(dir: string, template: string): void {
  if (existsSync(join(dir, "manifest.json"))) return;
  const m = JSON.parse(readFileSync(template, "utf8"));
  const ref = JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as {
    model: string;
    factors: string;
  };
  const sha = (f: string) =>
    `sha256:${createHash("sha256")
      .update(readFileSync(join(dir, f)))
      .digest("hex")}`;
  const roles: Record<string, string> = {
    "factors.safetensors": "factors",
    "tokenizer.json": "tokenizer",
    "tokenizer_config.json": "tokenizer-config",
    "model.onnx": "onnx",
    "model.onnx.data": "onnx-data",
  };
  m.id = ref.model;
  m.factors.sha256 = sha("factors.safetensors");
  if (m.factors.sha256 !== ref.factors)
    throw new Error(`factors ${m.factors.sha256} differ from the fixtures' ${ref.factors}`);
  m.onnx = {
    file: "model.onnx",
    data_file: "model.onnx.data",
    opset: 18,
    weights_dtype: "F32",
    quantization: "none",
  };
  m.io = {
    inputs: [
      "input_ids",
      "attention_mask",
      "position_ids",
      "R",
      "past_key_values.{i}.key",
      "past_key_values.{i}.value",
    ],
    outputs: ["logits", "present.{i}.key", "present.{i}.value"],
    R: { name: "R", shape: [m.modules.length, m.rank, m.rank], dtype: "float32" },
  };
  m.files = Object.entries(roles).map(([name, role]) => ({
    name,
    role,
    sha256: sha(name),
    bytes: statSync(join(dir, name)).size,
  }));
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(m, null, 1));
  console.log(`wrote ${join(dir, "manifest.json")} from ${template}`);
}

// navigator.gpu from Dawn, before onnxruntime-web is imported.
let info: GPUAdapterInfo | undefined;
try {
  const { create, globals } = (await import(
    pathToFileURL(join(args.root, "webgpu", "index.js")).href
  )) as {
    create: (flags: string[]) => GPU;
    globals: Record<string, unknown>;
  };
  Object.assign(globalThis, globals);
  Object.defineProperty(globalThis.navigator, "gpu", { value: create([]), configurable: true });
  info = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))?.info;
} catch (error) {
  console.log("no WebGPU:", String(error));
}

const median = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

async function decodeRun(model: PersonalModel, ids: number[], maxTokens: number) {
  const start = performance.now();
  let first = 0;
  let n = 0;
  for await (const _ of model.tokens({ ids }, { maxTokens, stopIds: new Set() })) {
    if (n === 0) first = performance.now() - start;
    n++;
  }
  const total = performance.now() - start;
  return { ttftMs: first, decodeTokensPerSecond: (n - 1) / ((total - first) / 1000) };
}

function adapterBytes(model: PersonalModel, seed: number): Uint8Array {
  const { model: id, factors, rank, modules } = model.expectations;
  if (id === undefined || factors === undefined || rank === undefined || modules === undefined)
    throw new Error("no expectations");
  const rng = createRng(seed);
  const R = Float32Array.from({ length: modules * rank * rank }, () => 0.02 * (rng() * 2 - 1));
  return encodeAdapter({ model: id, factors, rank, modules, R });
}

const results: Record<string, unknown> = {
  adapter: info
    ? {
        vendor: info.vendor,
        architecture: info.architecture,
        device: info.device,
        fallback: info.isFallbackAdapter,
      }
    : null,
  node: process.version,
  tokens: TOKENS,
};
for (const device of (args.devices ?? "").split(",") as ("webgpu" | "wasm")[]) {
  const model = await loadModel(modelDir, { device, cache: memoryCache() });
  const ids = model.encodePrompt([
    {
      role: "user",
      content: "Write two sentences about why small personal models are useful on a phone.",
    },
  ]);
  const first = await decodeRun(model, ids, 1);
  const errors: Record<string, number> = {};
  try {
    const ref = readReference(modelDir);
    for (const c of ref.cases) {
      model.setAdapter(caseAdapter(modelDir, c, ref));
      const [logits] = await model.forward(c.input_ids, c.attention_mask);
      errors[c.name] = maxAbsDiff(logits ?? [], c.logits_last?.[0] ?? []);
    }
  } catch (error) {
    errors.unavailable = Number.NaN;
    console.log("no reference check:", String(error));
  }
  const a = adapterBytes(model, 1);
  const b = adapterBytes(model, 2);
  const personal = decodeAdapter(a, model.expectations);
  const runs = {
    base: [] as { ttftMs: number; decodeTokensPerSecond: number }[],
    personal: [] as { ttftMs: number; decodeTokensPerSecond: number }[],
  };
  await decodeRun(model, ids, TOKENS); // warm-up
  for (let i = 0; i < REPEATS * 2; i++) {
    for (const which of i % 2 === 0
      ? (["base", "personal"] as const)
      : (["personal", "base"] as const)) {
      model.setAdapter(which === "base" ? null : personal);
      runs[which].push(await decodeRun(model, ids, TOKENS));
    }
  }
  const decoded = [decodeAdapter(a, model.expectations), decodeAdapter(b, model.expectations)];
  const swapDecodeSet: number[] = [];
  const swapSet: number[] = [];
  for (let i = 0; i < SWAP_ROUNDS; i++) {
    let t = performance.now();
    model.setAdapter(decodeAdapter(i % 2 ? a : b, model.expectations));
    swapDecodeSet.push(performance.now() - t);
    t = performance.now();
    model.setAdapter(decoded[i % 2] ?? null);
    swapSet.push(performance.now() - t);
  }
  const sum = (rows: { ttftMs: number; decodeTokensPerSecond: number }[]) => ({
    ttftMs: round(median(rows.map((r) => r.ttftMs)), 1),
    decodeTokensPerSecond: round(median(rows.map((r) => r.decodeTokensPerSecond)), 2),
  });
  const base = sum(runs.base);
  const pers = sum(runs.personal);
  results[device] = {
    reason: model.backend.reason,
    rLocation: model.rLocation,
    promptTokens: ids.length,
    adapterBytes: a.byteLength,
    load: {
      sessionMs: round(model.timings.sessionMs, 0),
      totalMs: round(model.timings.totalMs, 0),
      firstTokenMs: round(first.ttftMs, 0),
    },
    base,
    personal: pers,
    personalOverBase: round(pers.decodeTokensPerSecond / base.decodeTokensPerSecond, 3),
    swapMedianMs: {
      decodeAndSet: round(median(swapDecodeSet), 3),
      setOnly: round(median(swapSet), 3),
    },
    maxAbsLogitErrorVsPytorch: errors,
  };
  console.log(JSON.stringify({ [device]: results[device] }));
  await model.dispose();
}
if (args.out !== undefined) writeFileSync(args.out, `${JSON.stringify(results, null, 1)}\n`);
console.log(JSON.stringify(results));
process.exit(0);
