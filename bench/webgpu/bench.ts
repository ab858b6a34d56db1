// Client on a real GPU: the project's client (src/client) with onnxruntime-web's WebGPU EP in Node
// through Dawn, a SmolLM2-135M-shaped model (random weights, exported by loraxs.prepare).
// Rows: base (R = 0) and personal (a user's R) through the client; the plain graph (no LoRA-XS
// branch) through a bare onnxruntime loop and through transformers.js; WASM on the same machine.
//
// On a machine with a GPU (after bench/webgpu/run.sh has unpacked the carry folder):
//   node bench.mjs --root <unpacked> --model <model folder> [--tjs transformers.mjs] [--out r.json]
// Built by `npm run bench:webgpu -- build` (bench/webgpu/carry.mjs).
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { caseAdapter, maxAbsDiff, readReference } from "../../harness/reference.ts";
import { median } from "../../harness/stats.ts";
import { rTensor, type Tensor } from "../../src/client/backend/index.ts";
import { createRng, loadModel, memoryCache, type PersonalModel } from "../../src/client/index.ts";
import { decodeAdapter, encodeAdapter } from "../../src/format/index.ts";
import { tryDawn } from "./dawn.ts";
import { type DecodeTiming, prefillChunkOf, rawDecode } from "./raw.ts";
import { webGpuSummary } from "./summary.ts";
import { table } from "./table.ts";
import { tjsDecode } from "./tjs.ts";

const { values: args } = parseArgs({
  options: {
    root: { type: "string" },
    model: { type: "string" },
    tjs: { type: "string" },
    prompt: { type: "string", default: "128" },
    tokens: { type: "string", default: "128" },
    repeats: { type: "string", default: "3" },
    "wasm-tokens": { type: "string", default: "16" },
    devices: { type: "string", default: "webgpu,wasm" },
    /** Devices whose client rows (decode, swaps) run; the others only load for the bare rows. */
    client: { type: "string", default: "webgpu,wasm" },
    "raw-graphs": {
      type: "string",
      default:
        "plain.onnx,model.onnx,merged-folded.onnx,q4/model.q4w-plain.onnx,q4/model.q4w.onnx,q4/model.q4wp.onnx",
    },
    /** Plain graphs (no R) transformers.js runs: the traced one and the builder's. */
    "tjs-graphs": { type: "string", default: "plain.onnx,q4/model.q4w-plain.onnx" },
    /** Logit checks (last-position logits per R and graph, PyTorch fixtures). */
    checks: { type: "string", default: "yes" },
    out: { type: "string" },
  },
});
if (args.model === undefined) throw new Error("--model <prepared folder> is required");
const MODEL = args.model;
const PROMPT = Number(args.prompt);
const TOKENS = Number(args.tokens);
const REPEATS = Number(args.repeats);
const WASM_TOKENS = Number(args["wasm-tokens"]);
/** Swaps timed for the swap medians. */
const SWAP_ROUNDS = 500;
/** Spread of the bench adapters' R: the size of trained LoRA-XS entries. */
const R_SCALE = 0.02;

/** The data files a graph reads, relative to MODEL: its own (`<graph>.data*` beside it), else the
 * traced graph's `model.onnx.data`, which plain.onnx and the merged graphs share. */
function dataFiles(graph: string): string[] {
  const dir = dirname(graph);
  const own = readdirSync(join(MODEL, dir))
    .filter((f) => f.startsWith(`${basename(graph)}.data`))
    .sort()
    .map((f) => join(dir, f));
  return own.length > 0 ? own : ["model.onnx.data"];
}

const log = (...a: unknown[]) => console.log(...a);
const results: Record<string, unknown> = { node: process.version, prompt: PROMPT, tokens: TOKENS };

const adapter = await tryDawn(args.root, log);
results.adapter = adapter;
log("ADAPTER", JSON.stringify(adapter));

function adapterBytes(model: PersonalModel, seed: number): Uint8Array {
  const { model: id, factors, rank, modules } = model.expectations;
  if (id === undefined || factors === undefined || rank === undefined || modules === undefined)
    throw new Error(`incomplete expectations ${JSON.stringify(model.expectations)}`);
  const rng = createRng(seed);
  const R = Float32Array.from({ length: modules * rank * rank }, () => R_SCALE * (rng() * 2 - 1));
  return encodeAdapter({ model: id, factors, rank, modules, R });
}

/** A prompt of exactly PROMPT tokens: real text through the model's tokenizer, repeated. */
function promptIds(model: PersonalModel): number[] {
  const text =
    "Small personal models run on the phone in your pocket, learn the way you write, and keep your words on your device. ";
  const ids = model.encodePrompt(text.repeat(Math.ceil(PROMPT / 20)));
  if (ids.length < PROMPT) throw new Error(`prompt has ${ids.length} tokens, need ${PROMPT}`);
  return ids.slice(0, PROMPT);
}

async function clientDecode(model: PersonalModel, ids: number[], n: number): Promise<DecodeTiming> {
  const t0 = performance.now();
  let first = t0;
  const tokens: number[] = [];
  for await (const t of model.tokens({ ids }, { maxTokens: n, stopIds: new Set() })) {
    if (tokens.length === 0) first = performance.now();
    tokens.push(t);
  }
  const end = performance.now();
  return {
    prefillMs: first - t0,
    tokensPerSecond: (tokens.length - 1) / ((end - first) / 1000),
    tokens,
  };
}

interface Row {
  runtime: string;
  device: string;
  graph: string;
  R: string;
  runs: DecodeTiming[];
}
const rows: Row[] = [];
const logits: Record<string, Float32Array> = {};
const tokensOf: Record<string, number[]> = {};
const checks: Record<string, number | string> = {};
const swaps: Record<string, number> = {};

const DEVICES = (args.devices ?? "").split(",") as ("webgpu" | "wasm")[];
/** The client on one model folder: load, check logits, decode base and personal, time swaps. */
const CLIENT = (args.client ?? "").split(",");
const CHECKS = args.checks === "yes";
async function clientRows(device: "webgpu" | "wasm", folder: string, graph: string, full: boolean) {
  let t = performance.now();
  const model = await loadModel(folder, { device, cache: memoryCache() });
  results[`${device}/${graph} load`] = {
    ...model.timings,
    reason: model.backend.reason,
    rLocation: model.rLocation,
  };
  log(device, graph, "loaded in", (performance.now() - t).toFixed(0), "ms;", model.backend.reason);
  const ids = promptIds(model);
  const a = adapterBytes(model, 1);
  const b = adapterBytes(model, 2);
  const personal = decodeAdapter(a, model.expectations);
  const n = device === "webgpu" ? TOKENS : WASM_TOKENS;
  const repeats = device === "webgpu" ? REPEATS : 1;
  if (!CLIENT.includes(device)) return { model, ids, personal, n, repeats };
  t = performance.now();
  // Every KV length of the timed runs once: onnxruntime's WebGPU kernels compile per shape.
  await clientDecode(model, ids, n);
  results[`${device}/${graph} warm-up ms`] = performance.now() - t;
  // Logits of the prompt's last position, per R: the same on every device and graph.
  for (const [label, r] of CHECKS
    ? ([
        ["base", null],
        ["personal", personal],
      ] as const)
    : []) {
    model.setAdapter(r);
    const [row] = await model.forward([ids]);
    if (row !== undefined) logits[`${device}/${graph}/${label}`] = row;
  }
  if (full && CHECKS) {
    try {
      const ref = readReference(MODEL);
      let worst = 0;
      for (const c of ref.cases) {
        model.setAdapter(caseAdapter(MODEL, c, ref));
        const [row] = await model.forward(c.input_ids, c.attention_mask);
        worst = Math.max(worst, maxAbsDiff(row ?? [], c.logits_last?.[0] ?? []));
      }
      checks[`${device} ${graph} vs PyTorch (max abs logit error, ${ref.cases.length} cases)`] =
        worst;
    } catch (error) {
      checks[`${device} ${graph} vs PyTorch`] = `unavailable: ${String(error)}`;
    }
  }
  const base: DecodeTiming[] = [];
  const pers: DecodeTiming[] = [];
  for (let i = 0; i < repeats; i++) {
    for (const which of i % 2 === 0 ? ["base", "personal"] : ["personal", "base"]) {
      model.setAdapter(which === "base" ? null : personal);
      const run = await clientDecode(model, ids, n);
      (which === "base" ? base : pers).push(run);
      log(device, graph, which, JSON.stringify({ ...run, tokens: run.tokens.length }));
    }
  }
  tokensOf[`${device}/${graph}/base`] = base[0]?.tokens ?? [];
  tokensOf[`${device}/${graph}/personal`] = pers[0]?.tokens ?? [];
  rows.push({ runtime: "loraxs client", device, graph, R: "0 (base)", runs: base });
  rows.push({ runtime: "loraxs client", device, graph, R: "user's", runs: pers });
  const decoded = [decodeAdapter(a, model.expectations), decodeAdapter(b, model.expectations)];
  const setOnly: number[] = [];
  const fromBytes: number[] = [];
  for (let i = 0; i < SWAP_ROUNDS; i++) {
    t = performance.now();
    model.setAdapter(decoded[i % 2] ?? null);
    setOnly.push(performance.now() - t);
    t = performance.now();
    model.setAdapter(decodeAdapter(i % 2 ? a : b, model.expectations));
    fromBytes.push(performance.now() - t);
  }
  // A swap followed by one decode step: the new R is in effect for the very next run.
  t = performance.now();
  model.setAdapter(decoded[0] ?? null);
  await clientDecode(model, ids.slice(0, 1), 1);
  swaps[`${device} ${graph}: swap + 1-token run`] = performance.now() - t;
  swaps[`${device} ${graph}: setAdapter, median of ${SWAP_ROUNDS}`] = median(setOnly);
  swaps[`${device} ${graph}: decode F16 adapter bytes + setAdapter, median`] = median(fromBytes);
  return { model, ids, personal, n, repeats };
}

for (const device of DEVICES) {
  if (device === "webgpu" && adapter === null) {
    log("skip webgpu: no adapter");
    continue;
  }
  const { model, ids, personal, n, repeats } = await clientRows(device, MODEL, "model.onnx", true);
  // One session at a time: the next ones need the WASM heap the first one's weights passed through.
  await model.dispose();
  let t = performance.now();
  if (
    device === DEVICES[0] &&
    CLIENT.includes(device) &&
    existsSync(join(MODEL, "merged", "manifest.json"))
  ) {
    // merged.onnx's Concat/Split of 30 inputs exceed WebGPU's storage buffers per shader: a
    // failure here is reported, the other rows still run.
    try {
      const m = await clientRows(device, join(MODEL, "merged"), "merged.onnx", false);
      await m.model.dispose();
    } catch (error) {
      checks[`${device} client merged.onnx`] = `failed: ${String(error)}`;
    }
  }
  // The new client graph: q4/ lists q4w (webgpu) first, the client picks it by device.
  if (CLIENT.includes(device) && existsSync(join(MODEL, "q4", "manifest.json"))) {
    try {
      const m = await clientRows(device, join(MODEL, "q4"), "q4", false);
      results[`${device}/q4 graph`] = m.model.graph;
      await m.model.dispose();
    } catch (error) {
      checks[`${device} client q4`] = `failed: ${String(error)}`;
    }
  }
  if (device === DEVICES[0]) {
    // The same session's onnxruntime, bare: model.onnx with R, and plain.onnx without the branch.
    const ort = model.backend.ort;
    const kv = { layers: model.manifest.config.num_layers, kvHeads: 3, headDim: 64 };
    const c = model.manifest.config;
    kv.kvHeads = c.num_kv_heads ?? kv.kvHeads;
    kv.headDim = c.head_dim ?? kv.headDim;
    const shared = new Uint8Array(readFileSync(join(MODEL, "model.onnx.data")));
    // The KV cache stays on the GPU; the logits too, so that their read-back is timed apart.
    const outputsOnGpu = Object.fromEntries([
      ["logits", "gpu-buffer"],
      ...Array.from({ length: kv.layers }, (_, i) => [
        [`present.${i}.key`, "gpu-buffer"],
        [`present.${i}.value`, "gpu-buffer"],
      ]).flat(),
    ]);
    const graphs = (args["raw-graphs"] ?? "").split(",").filter((g) => existsSync(join(MODEL, g)));
    for (const graph of graphs) {
      t = performance.now();
      let session: Awaited<ReturnType<typeof ort.InferenceSession.create>>;
      const external = dataFiles(graph).map((f) => ({
        path: basename(f),
        data: f === "model.onnx.data" ? shared : new Uint8Array(readFileSync(join(MODEL, f))),
      }));
      try {
        session = await ort.InferenceSession.create(
          new Uint8Array(readFileSync(join(MODEL, graph))),
          {
            executionProviders: [device],
            graphOptimizationLevel: "all",
            externalData: external,
            ...(device === "webgpu"
              ? { preferredOutputLocation: outputsOnGpu as Record<string, "gpu-buffer"> }
              : {}),
          },
        );
      } catch (error) {
        checks[`${device} ${graph} session`] = `failed: ${String(error)}`;
        continue;
      }
      log("raw", graph, "session", (performance.now() - t).toFixed(0), "ms");
      const plain = graph.includes("plain");
      const extra: Record<string, Tensor> = plain
        ? {}
        : {
            // On WebGPU R lives in a GPU buffer, as the client keeps it: fed from the CPU, the
            // per-layer Gathers of R run on the CPU and each step waits on 30 uploads. The buffer is
            // made on onnxruntime's device of now: the client models above were released, and
            // onnxruntime-web lets its device go with its last session (its `preserveDevice` is
            // off), so a buffer made on the earlier device is invalid here.
            R: rTensor(
              { ...model.backend, gpuDevice: (await ort.env.webgpu.device) as GPUDevice },
              personal.R,
              [personal.modules, personal.rank, personal.rank],
            ),
          };
      const runs: DecodeTiming[] = [];
      // GroupQueryAttention graphs prefill in the chunks their manifest entry names (docs/client.md).
      const chunk = prefillChunkOf(readFileSync(join(MODEL, graph)));
      try {
        await rawDecode(ort, session, kv, ids, n, extra, { chunk }); // every KV length once
        for (let i = 0; i < repeats; i++)
          runs.push(await rawDecode(ort, session, kv, ids, n, extra, { chunk }));
      } catch (error) {
        // e.g. a Split into 30 outputs binds more storage buffers than WebGPU allows: reported,
        // and the other graphs still run.
        checks[`${device} ${graph} run`] = `failed: ${String(error).slice(0, 300)}`;
        await session.release();
        continue;
      }
      tokensOf[`${device}/raw/${graph}`] = runs[0]?.tokens ?? [];
      rows.push({
        runtime: "onnxruntime-web, bare loop",
        device,
        graph,
        R: plain ? "none (no branch)" : "user's",
        runs,
      });
      results[`split ${device} ${graph}`] = runs.map((r) => r.split);
      await session.release();
    }
    const tjsGraphs = (args["tjs-graphs"] ?? "")
      .split(",")
      .filter((g) => existsSync(join(MODEL, g)));
    const bundle = args.tjs;
    for (const graph of tjsGraphs) {
      if (bundle === undefined) break;
      try {
        const work = mkdtempSync(join(tmpdir(), "tjs-"));
        const plain = { graph, data: dataFiles(graph) };
        const peer = await tjsDecode(ort, bundle, MODEL, plain, work, device, ids, n, repeats);
        results[`tjsLoadMs ${graph}`] = peer.loadMs;
        tokensOf[`${device}/transformers.js/${graph}`] = peer.runs[0]?.tokens ?? [];
        rows.push({
          runtime: "transformers.js 4.3.1",
          device,
          graph,
          R: "none (no branch)",
          runs: peer.runs,
        });
      } catch (error) {
        results[`tjsError ${graph}`] = String(
          error instanceof Error ? (error.stack ?? error) : error,
        );
        log("transformers.js failed:", graph, results[`tjsError ${graph}`]);
      }
    }
  }
}

// Agreement: devices on the same R, and R's effect (it must move the logits).
const D = DEVICES.find((d) => logits[`${d}/model.onnx/base`] !== undefined) ?? "webgpu";
const pairs: [string, string][] = [
  [`${D}/model.onnx/base`, `${D}/model.onnx/personal`],
  [`${D}/model.onnx/personal`, `${D}/merged.onnx/personal`],
  [`${D}/model.onnx/base`, `${D}/merged.onnx/base`],
];
if (D !== "wasm")
  pairs.push(
    [`${D}/model.onnx/base`, "wasm/model.onnx/base"],
    [`${D}/model.onnx/personal`, "wasm/model.onnx/personal"],
  );
for (const [x, y] of pairs) {
  const p = logits[x];
  const q = logits[y];
  if (p !== undefined && q !== undefined)
    checks[`logits ${x} vs ${y} (max abs)`] = maxAbsDiff(p, q);
}
const same = (x: string, y: string) => {
  const p = tokensOf[x];
  const q = tokensOf[y];
  if (p === undefined || q === undefined || p.length === 0 || q.length === 0) return;
  const n = Math.min(p.length, q.length);
  let k = 0;
  while (k < n && p[k] === q[k]) k++;
  checks[`greedy tokens ${x} = ${y}`] = `${k} of ${n} agree`;
};
same(`${D}/model.onnx/base`, `${D}/raw/plain.onnx`);
same(`${D}/model.onnx/base`, `${D}/transformers.js/plain.onnx`);
same(`${D}/model.onnx/personal`, `${D}/raw/model.onnx`);
same(`${D}/model.onnx/personal`, `${D}/merged.onnx/personal`);
same(`${D}/model.onnx/personal`, `${D}/raw/merged.onnx`);
// The new graph against itself through the bare loop and transformers.js, and against the old one
// (4-bit rounding of random weights moves logits, so agreement there is informative only).
same(`${D}/q4/base`, `${D}/raw/q4/model.q4w-plain.onnx`);
same(`${D}/q4/base`, `${D}/transformers.js/q4/model.q4w-plain.onnx`);
same(`${D}/q4/personal`, `${D}/raw/q4/model.q4w.onnx`);
same(`${D}/q4/personal`, `${D}/model.onnx/personal`);
for (const [x, y] of [
  [`${D}/q4/base`, `${D}/q4/personal`],
  [`${D}/q4/personal`, `${D}/model.onnx/personal`],
] as const) {
  const p = logits[x];
  const q = logits[y];
  if (p !== undefined && q !== undefined)
    checks[`logits ${x} vs ${y} (max abs)`] = maxAbsDiff(p, q);
}
if (D !== "wasm") {
  same(`${D}/model.onnx/base`, "wasm/model.onnx/base");
  same(`${D}/model.onnx/personal`, "wasm/model.onnx/personal");
}

results.rows = rows.map((r) => ({
  ...r,
  // Token ids counted, and the bare loop's first logits left out (49,152 floats a run).
  runs: r.runs.map(({ firstLogits: _, ...x }) => ({ ...x, tokens: x.tokens.length })),
}));
results.checks = checks;
// The figures bench/results/client-graph.json keeps (bench/webgpu/record.ts writes them there).
results.summary = webGpuSummary(
  rows,
  adapter === null ? "none" : `${D}: ${JSON.stringify(adapter)}`,
  new Date().toISOString(),
);
results.swaps = swaps;
if (args.out !== undefined) writeFileSync(args.out, `${JSON.stringify(results, null, 1)}\n`);
log(table(rows, checks, swaps));
process.exit(0);
