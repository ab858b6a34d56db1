// Per base model: what a device downloads, what a user costs, decode speed in Node (onnxruntime-node,
// CPU) and in Chromium's WASM (the graph the manifest lists for wasm), and the quality figures other
// runs recorded; written to bench/results/models.json.
//
//   node --experimental-strip-types bench/models.bench.ts [--models smollm2-135m,gemma3-270m]
//        [--prepare-log gemma3-270m=/tmp/prepare.log] [--tokens 32] [--repeats 3] [--skip-browser]
//
// Models come from models/<id> (npm run prepare-model -- --preset <id>). A figure this script cannot
// measure here stays null until its run exists: fraction_of_lora_gain_mean comes from
// bench/results/quality.json (SmolLM2) or bench/results/quality-<id>.json (bench/quality.py --report
// on the GPU machine), webgpu_decode_tok_s from bench/results/webgpu-<id>.json.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildPage } from "../harness/browser/build.ts";
import { hasChromium, launch } from "../harness/browser/chromium.ts";
import type { LoraxsPage } from "../harness/browser/page/entry.ts";
import { startPageServer } from "../harness/browser/server.ts";
import { startStaticServer } from "../harness/static-server.ts";
import { median, round } from "../harness/stats.ts";
import {
  type ClientManifest,
  chooseGraph,
  graphFileFilter,
  loadModel,
  memoryCache,
  type PersonalModel,
  SKIPPED_ROLES,
} from "../src/client/index.ts";
import { encodeAdapter } from "../src/format/index.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const RESULTS = join(ROOT, "bench", "results", "models.json");
const { values: args } = parseArgs({
  options: {
    models: { type: "string", default: "smollm2-135m,gemma3-270m" },
    "prepare-log": { type: "string", multiple: true, default: [] },
    tokens: { type: "string", default: "32" },
    "skip-browser": { type: "boolean", default: false },
    repeats: { type: "string", default: "3" },
  },
});
const TOKENS = Number(args.tokens);
const REPEATS = Number(args.repeats);
const PROMPT = "Write two sentences about why small personal models are useful on a phone.";
/** The LoRA-XS row each model's quality file holds for its shipped factors. */
const SHIPPED_METHOD: Record<string, string> = {
  "smollm2-135m": "xs-pop-r16-qv",
  "gemma3-270m": "xs-svd-r16-qv",
};

/** Bytes a first visit fetches on `device`: its graph and data, tokenizer, factors, manifest (null: no graph for it). */
function downloadBytes(dir: string, manifest: ClientManifest, device: string): number | null {
  if (!(manifest.graphs ?? []).some((g) => g.devices.includes(device)) && !manifest.onnx)
    return null;
  const choice = chooseGraph(manifest, device);
  const wanted = graphFileFilter(manifest, choice);
  const files = manifest.files.filter((f) => !SKIPPED_ROLES.has(f.role) && wanted(f));
  return files.reduce((n, f) => n + f.bytes, readFileSync(join(dir, "manifest.json")).byteLength);
}

/** An adapter file as the trainer writes it (F16 R, zeros: the size does not depend on the values). */
function adapterBytes(manifest: ClientManifest & { rank: number; factors: { sha256: string } }) {
  const modules = manifest.io.R.shape[0] ?? 0;
  const R = new Float32Array(modules * manifest.rank * manifest.rank);
  return encodeAdapter({
    model: manifest.id,
    factors: manifest.factors.sha256,
    rank: manifest.rank,
    modules,
    R,
  }).byteLength;
}

async function decodeTokensPerSecond(model: PersonalModel, ids: number[]): Promise<number> {
  let first = 0;
  let n = 0;
  for await (const _ of model.tokens({ ids }, { maxTokens: TOKENS, stopIds: new Set() })) {
    if (n === 0) first = performance.now();
    n++;
  }
  return (n - 1) / ((performance.now() - first) / 1000);
}

async function nodeDecode(dir: string) {
  const server = await startStaticServer(dir);
  try {
    const model = await loadModel(`${server.url}/manifest.json`, {
      device: "cpu",
      cache: memoryCache(),
    });
    const ids = model.encodePrompt([{ role: "user", content: PROMPT }]);
    await decodeTokensPerSecond(model, ids); // warm-up
    const runs: number[] = [];
    for (let i = 0; i < REPEATS; i++) runs.push(await decodeTokensPerSecond(model, ids));
    const row = { graph: model.graph.name, ids, tok_s: round(median(runs)) };
    await model.dispose();
    return row;
  } finally {
    await server.close();
  }
}

/** Chromium's WASM on the graph the manifest lists for wasm (null when none): the same prompt, R = 0,
 * median of REPEATS after a warm-up; the page is the browser tests' (Cache Storage, its onnxruntime-web). */
async function chromiumWasmDecode(
  id: string,
  dir: string,
  manifest: ClientManifest,
  ids: number[],
) {
  if (args["skip-browser"] || !hasChromium()) return null;
  if (!(manifest.graphs ?? []).some((g) => g.devices.includes("wasm"))) return null;
  await buildPage();
  const server = await startPageServer({ [id]: dir });
  const browser = await launch(`${server.url}/`);
  type Page = { loraxsPage: LoraxsPage };
  try {
    const loaded = await browser.page.evaluate(
      (u) => (window as unknown as Page).loraxsPage.load(u, "wasm"),
      `/models/${id}/manifest.json`,
    );
    const timing = () =>
      browser.page.evaluate(
        ([p, k]) => (window as unknown as Page).loraxsPage.decodeTiming(p as number[], k as number),
        [ids, TOKENS] as const,
      );
    await timing(); // warm-up
    const runs: number[] = [];
    for (let i = 0; i < REPEATS; i++) runs.push((await timing()).decodeTokensPerSecond);
    return { graph: loaded.graph, tok_s: round(median(runs)) };
  } finally {
    await browser.close();
    await server.close();
  }
}

function qualityMean(id: string): number | null {
  const file = join(
    ROOT,
    "bench",
    "results",
    id === "smollm2-135m" ? "quality.json" : `quality-${id}.json`,
  );
  if (!existsSync(file)) return null;
  const entries = (
    JSON.parse(readFileSync(file, "utf8")) as {
      entries: { method: string; group: string; fraction_of_lora_gain_mean: number }[];
    }
  ).entries.filter((e) => e.method === SHIPPED_METHOD[id] && e.group === "eval");
  if (entries.length === 0) return null;
  return entries.reduce((s, e) => s + e.fraction_of_lora_gain_mean, 0) / entries.length;
}

/** The client's personal WebGPU decode on the GPU machine: bench:webgpu's figure for the model
 * bench/results/client-graph.json describes (its default graph), else webgpu-<id>.json's. */
function webgpuTokS(id: string): number | null {
  const clientGraph = join(ROOT, "bench", "results", "client-graph.json");
  if (existsSync(clientGraph)) {
    const r = JSON.parse(readFileSync(clientGraph, "utf8")) as {
      model?: string;
      webgpu_decode_tok_s?: { new?: number | null };
    };
    if (r.model === id && typeof r.webgpu_decode_tok_s?.new === "number")
      return Math.round(r.webgpu_decode_tok_s.new * 100) / 100;
  }
  const file = join(ROOT, "bench", "results", `webgpu-${id}.json`);
  if (!existsSync(file)) return null;
  return (JSON.parse(readFileSync(file, "utf8")) as { decode_tok_s?: number }).decode_tok_s ?? null;
}

function prepareSeconds(id: string, previous: Record<string, unknown> | undefined): number | null {
  const log = args["prepare-log"].find((x) => x.startsWith(`${id}=`))?.slice(id.length + 1);
  if (log === undefined) return (previous?.prepare_seconds as number | undefined) ?? null;
  const total = /timings .*total ([\d.]+) s/.exec(readFileSync(log, "utf8"))?.[1];
  return total === undefined ? null : Number(total);
}

const old = existsSync(RESULTS)
  ? (JSON.parse(readFileSync(RESULTS, "utf8")) as {
      models: Record<string, Record<string, unknown>>;
    })
  : { models: {} };
const out: Record<string, unknown> = {};
for (const id of args.models.split(",")) {
  const dir = join(ROOT, "models", id);
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  const node = await nodeDecode(dir);
  const wasm = await chromiumWasmDecode(id, dir, manifest, node.ids);
  out[id] = {
    download_bytes: downloadBytes(dir, manifest, "webgpu"),
    download_bytes_by_device: Object.fromEntries(
      ["cpu", "wasm", "webgpu"].map((d) => [d, downloadBytes(dir, manifest, d)]),
    ),
    adapter_bytes: adapterBytes(manifest),
    fraction_of_lora_gain_mean: qualityMean(id),
    webgpu_decode_tok_s: webgpuTokS(id),
    node_cpu_decode_tok_s: node.tok_s,
    node_cpu_graph: node.graph,
    chromium_wasm_decode_tok_s: wasm?.tok_s ?? null,
    chromium_wasm_graph: wasm?.graph ?? null,
    prepare_seconds: prepareSeconds(id, old.models[id]),
  };
  console.log(JSON.stringify({ [id]: out[id] }));
}
const doc = {
  machine: `${cpus()[0]?.model ?? "cpu"} × ${cpus().length}, Node ${process.version}`,
  date: new Date().toISOString(),
  command: "node --experimental-strip-types bench/models.bench.ts",
  notes:
    "download_bytes: a browser's first visit on WebGPU (graph + data, tokenizer, factors, manifest; by device: null where no graph " +
    "lists it); node_cpu_decode_tok_s: " +
    `greedy, ${TOKENS} tokens after a chat prompt, median of ${REPEATS}, R = 0; chromium_wasm_decode_tok_s: the same in ` +
    "Chromium's WASM on the graph listed for wasm",
  models: { ...old.models, ...out },
};
writeFileSync(RESULTS, `${JSON.stringify(doc, null, 1)}\n`);
console.log(`wrote ${RESULTS}`);
