// Client benchmark: per backend (Node onnxruntime-node CPU, Chromium WASM, Chromium WebGPU on
// SwiftShader), cold start broken down, time to first token and decode tokens/s with R = 0
// versus a personal adapter, and adapter swap latency from the local copy.
//
//   npm run bench:client                       # smollm2-135m if exported, else tiny-llama
//   npm run bench:client -- --model tiny-llama --tokens 16 --skip-browser
//
// Models come from .cache/models/<id> (npm run prepare-model -- --preset <id> --fp32-graph --out .cache/models/<id>:
// the old column is the traced fp32 graph).
// WebGPU here is SwiftShader (software): it always runs tiny-llama, and its timings are not GPU speed.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildPage } from "../harness/browser/build.ts";
import { hasChromium, launch } from "../harness/browser/chromium.ts";
import type { LoraxsPage } from "../harness/browser/page/entry.ts";
import { startPageServer } from "../harness/browser/server.ts";
import { ensureModel, MODELS_DIR } from "../harness/models.ts";
import { caseAdapter, maxAbsDiff, readReference } from "../harness/reference.ts";
import { startStaticServer } from "../harness/static-server.ts";
import { median, round } from "../harness/stats.ts";
import { createRng, fsCache, loadModel, type PersonalModel } from "../src/client/index.ts";
import { decodeAdapter, encodeAdapter } from "../src/format/index.ts";
import { recordClientGraph } from "./client-graph-results.ts";

const { values: args } = parseArgs({
  options: {
    model: { type: "string" },
    tokens: { type: "string", default: "32" },
    "webgpu-tokens": { type: "string", default: "8" },
    repeats: { type: "string", default: "3" },
    "webgpu-repeats": { type: "string", default: "1" },
    "skip-browser": { type: "boolean", default: false },
    "skip-node": { type: "boolean", default: false },
    out: { type: "string" },
  },
});
const TOKENS = Number(args.tokens);
const WEBGPU_TOKENS = Number(args["webgpu-tokens"]);
const REPEATS = Number(args.repeats);
/** SwiftShader decodes a 2-layer model at seconds per token: fewer rounds there. */
const WEBGPU_REPEATS = Number(args["webgpu-repeats"]);
/** Swaps timed for the swap-latency median. */
const SWAP_ROUNDS = 200;
const PROMPT = "Write two sentences about why small personal models are useful on a phone.";

const hasOnnx = (id: string) => existsSync(join(MODELS_DIR, id, "model.onnx"));
const modelId = args.model ?? (hasOnnx("smollm2-135m") ? "smollm2-135m" : "tiny-llama");
const modelDir = modelId.startsWith("tiny-")
  ? await ensureModel(modelId as "tiny-llama")
  : join(MODELS_DIR, modelId);
if (!hasOnnx(modelId))
  throw new Error(
    `${modelDir} has no model.onnx; run npm run prepare-model -- --preset ${modelId} --fp32-graph --out ${modelDir}`,
  );

/** Old graph (the traced fp32 one), then the manifest's default, then its other graphs, when it has graphs. */
const manifestGraphs = (
  JSON.parse(readFileSync(join(modelDir, "manifest.json"), "utf8")) as {
    graphs?: { name: string }[];
  }
).graphs;
const GRAPHS: (string | undefined)[] =
  manifestGraphs === undefined
    ? [undefined]
    : ["fp32", ...manifestGraphs.map((g) => g.name).filter((n) => n !== "fp32")];

/** Two personal adapters for `model` in F16 (the default storage dtype), R ~ N(0, 0.02). */
function benchAdapters(model: PersonalModel): [Uint8Array, Uint8Array] {
  const { model: id, factors, rank, modules } = model.expectations;
  if (id === undefined || factors === undefined || rank === undefined || modules === undefined)
    throw new Error("no expectations");
  const make = (seed: number) => {
    const rng = createRng(seed);
    const R = Float32Array.from({ length: modules * rank * rank }, () => {
      const u = Math.max(rng(), 1e-12);
      return 0.02 * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
    });
    return encodeAdapter({ model: id, factors, rank, modules, R });
  };
  return [make(1), make(2)];
}

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

interface DecodeRow {
  ttftMs: number;
  decodeTokensPerSecond: number;
}
const summarize = (runs: DecodeRow[]) => ({
  ttftMs: round(median(runs.map((r) => r.ttftMs)), 1),
  decodeTokensPerSecond: round(median(runs.map((r) => r.decodeTokensPerSecond)), 2),
});

const results: Record<string, unknown> = {
  model: modelId,
  machine: `${cpus()[0]?.model ?? "cpu"} × ${cpus().length}, ${process.platform} ${process.arch}, Node ${process.version}`,
  date: new Date().toISOString(),
  tokens: TOKENS,
  // The 1-minute load average when the run starts and ends: on a shared machine, rows are comparable
  // only within one run, and only while this stays low.
  loadAverage: { start: round(loadavg()[0] ?? Number.NaN), end: Number.NaN },
};

// ---- Node, onnxruntime-node (CPU): each graph variant ----
async function nodeRows(graph: string | undefined, device: "cpu" | "wasm" = "cpu") {
  const server = await startStaticServer(modelDir);
  const cacheDir = mkdtempSync(join(tmpdir(), "loraxs-bench-"));
  try {
    const url = `${server.url}/manifest.json`;
    const cold = await loadModel(url, { device, cache: await fsCache(cacheDir), graph });
    const ids = cold.encodePrompt([{ role: "user", content: PROMPT }]);
    const firstToken = await decodeRun(cold, ids, 1);
    await cold.dispose();
    const warm = await loadModel(url, { device, cache: await fsCache(cacheDir), graph });
    const warmFirst = await decodeRun(warm, ids, 1);
    // The real model against PyTorch, when prepare wrote its fixtures (a check, not a timing).
    const referenceErrors: Record<string, number> = {};
    if (existsSync(join(modelDir, "reference.json"))) {
      const ref = readReference(modelDir);
      for (const c of ref.cases) {
        warm.setAdapter(caseAdapter(modelDir, c, ref));
        const [logits] = await warm.forward(c.input_ids, c.attention_mask);
        referenceErrors[c.name] = maxAbsDiff(logits ?? [], c.logits_last?.[0] ?? []);
      }
    }
    const [a, b] = benchAdapters(warm);
    const base: DecodeRow[] = [];
    const personal: DecodeRow[] = [];
    const personalAdapter = decodeAdapter(a, warm.expectations);
    await decodeRun(warm, ids, TOKENS); // warm-up, not counted
    // Alternating order (ABBA) so drift on a shared machine hits both sides alike.
    for (let i = 0; i < REPEATS * 2; i++) {
      for (const which of i % 2 === 0 ? ["base", "personal"] : ["personal", "base"]) {
        warm.setAdapter(which === "base" ? null : personalAdapter);
        (which === "base" ? base : personal).push(await decodeRun(warm, ids, TOKENS));
      }
    }
    const decoded = [decodeAdapter(a, warm.expectations), decodeAdapter(b, warm.expectations)];
    const swapDecodeSet: number[] = [];
    const swapSet: number[] = [];
    for (let i = 0; i < SWAP_ROUNDS; i++) {
      let t = performance.now();
      warm.setAdapter(decodeAdapter(i % 2 ? a : b, warm.expectations));
      swapDecodeSet.push(performance.now() - t);
      t = performance.now();
      warm.setAdapter(decoded[i % 2] ?? null);
      swapSet.push(performance.now() - t);
    }
    const b0 = summarize(base);
    const p0 = summarize(personal);
    const row = {
      graph: warm.graph.name,
      runtime:
        device === "cpu"
          ? "onnxruntime-node 1.30.0, CPU EP"
          : "onnxruntime-web 1.30.0 in Node, WASM EP, 1 thread",
      promptTokens: ids.length,
      adapterBytes: a.byteLength,
      coldStart: {
        downloadMs: round(cold.timings.downloadMs, 0),
        downloadedMB: round(cold.timings.downloadedBytes / 2 ** 20, 1),
        verifyMs: round(cold.timings.verifyMs, 0),
        sessionMs: round(cold.timings.sessionMs, 0),
        tokenizerMs: round(cold.timings.tokenizerMs, 0),
        loadTotalMs: round(cold.timings.totalMs, 0),
        firstTokenMs: round(firstToken.ttftMs, 0),
      },
      warmStart: {
        downloadedMB: round(warm.timings.downloadedBytes / 2 ** 20, 1),
        loadTotalMs: round(warm.timings.totalMs, 0),
        sessionMs: round(warm.timings.sessionMs, 0),
        firstTokenMs: round(warmFirst.ttftMs, 0),
      },
      base: b0,
      personal: p0,
      personalOverBase: round(p0.decodeTokensPerSecond / b0.decodeTokensPerSecond, 3),
      swapMedianMs: {
        decodeAndSet: round(median(swapDecodeSet), 3),
        setOnly: round(median(swapSet), 3),
      },
      maxAbsLogitErrorVsPytorch: referenceErrors,
    };
    console.log(JSON.stringify({ [`node-${device}`]: row }, null, 1));
    await warm.dispose();
    return row;
  } finally {
    await server.close();
    rmSync(cacheDir, { recursive: true, force: true });
  }
}

const graphs = GRAPHS;
if (!args["skip-node"]) {
  const rows = [];
  for (const g of graphs) rows.push(await nodeRows(g));
  results["node-cpu"] = rows;
  // The WASM build without a browser (this machine may have none): one thread, as Node runs it.
  const wasmRows = [];
  for (const g of graphs) wasmRows.push(await nodeRows(g, "wasm"));
  results["node-wasm"] = wasmRows;
}

// ---- Chromium: WASM (same model) and WebGPU on SwiftShader (tiny-llama) ----
if (!args["skip-browser"] && hasChromium()) {
  const tinyDir = await ensureModel("tiny-llama");
  const adaptersDir = mkdtempSync(join(tmpdir(), "loraxs-bench-adapters-"));
  // Prompt ids and adapters made in Node with each model's own tokenizer and expectations.
  const prep = async (dir: string, prefix: string) => {
    const m = await loadModel(dir, {
      device: "cpu",
      cache: await fsCache(join(adaptersDir, "cache")),
    });
    const ids = m.encodePrompt([{ role: "user", content: PROMPT }]);
    const [a, b] = benchAdapters(m);
    writeFileSync(join(adaptersDir, `${prefix}-a.safetensors`), a);
    writeFileSync(join(adaptersDir, `${prefix}-b.safetensors`), b);
    await m.dispose();
    return ids;
  };
  const ids = await prep(modelDir, "main");
  const tinyIds = await prep(tinyDir, "tiny");
  await buildPage();
  const server = await startPageServer({ main: modelDir, tiny: tinyDir, adapters: adaptersDir });
  const browser = await launch(`${server.url}/`);
  try {
    // onnxruntime-web's WASM threads: with no numThreads set (the client sets none in a browser) it
    // takes min(4, ceil(hardwareConcurrency / 2)) when the page is crossOriginIsolated, else 1.
    const env = await browser.page.evaluate(() => ({
      crossOriginIsolated: globalThis.crossOriginIsolated,
      hardwareConcurrency: navigator.hardwareConcurrency,
    }));
    results["chromium-wasm-threads"] = {
      ...env,
      numThreads: env.crossOriginIsolated ? Math.min(4, Math.ceil(env.hardwareConcurrency / 2)) : 1,
    };
    type Page = { loraxsPage: LoraxsPage };
    const runBackend = async (
      device: "wasm" | "webgpu",
      prefix: "main" | "tiny",
      promptIds: number[],
      tokens: number,
      repeats: number,
      graph?: string,
    ) => {
      const folder = prefix === "main" ? "/models/main" : "/models/tiny";
      const page = browser.page;
      const t0 = Date.now();
      const load = () =>
        page.evaluate(
          ([d, f, g]) =>
            (window as unknown as Page).loraxsPage.load(
              `${f}/manifest.json`,
              d as "wasm",
              g as string | undefined,
            ),
          [device, folder, graph] as const,
        );
      const cold = await load();
      const coldWall = Date.now() - t0;
      const first = await page.evaluate(
        ([p]) => (window as unknown as Page).loraxsPage.decodeTiming(p as number[], 1),
        [promptIds] as const,
      );
      const base: DecodeRow[] = [];
      const personal: DecodeRow[] = [];
      const adapterA = `/models/adapters/${prefix}-a.safetensors`;
      const adapterB = `/models/adapters/${prefix}-b.safetensors`;
      const timing = (n: number, adapter?: string) =>
        page.evaluate(
          ([p, k, u]) =>
            (window as unknown as Page).loraxsPage.decodeTiming(
              p as number[],
              k as number,
              u as string | undefined,
            ),
          [promptIds, n, adapter] as const,
        );
      await timing(tokens); // warm-up, not counted
      for (let i = 0; i < repeats * 2; i++) {
        for (const which of i % 2 === 0 ? ["base", "personal"] : ["personal", "base"]) {
          if (which === "base") base.push(await timing(tokens));
          else personal.push(await timing(tokens, adapterA));
        }
      }
      const swap = await page.evaluate(
        ([u1, u2, n]) =>
          (window as unknown as Page).loraxsPage.swapTiming(
            [u1 as string, u2 as string],
            n as number,
          ),
        [adapterA, adapterB, SWAP_ROUNDS] as const,
      );
      const warm = await load();
      const b0 = summarize(base);
      const p0 = summarize(personal);
      return {
        model: prefix === "main" ? modelId : "tiny-llama",
        graph: cold.graph,
        reason: cold.reason,
        promptTokens: promptIds.length,
        coldStart: {
          downloadMs: round(cold.timings.downloadMs, 0),
          downloadedMB: round(cold.timings.downloadedBytes / 2 ** 20, 1),
          verifyMs: round(cold.timings.verifyMs, 0),
          sessionMs: round(cold.timings.sessionMs, 0),
          loadTotalMs: round(cold.timings.totalMs, 0),
          loadWallMs: coldWall,
          cacheWriteErrors: cold.timings.cacheWriteErrors,
          firstTokenMs: round(first.ttftMs, 0),
        },
        warmStart: {
          downloadedMB: round(warm.timings.downloadedBytes / 2 ** 20, 1),
          downloadedBytes: warm.timings.downloadedBytes,
          cacheReadMs: round(warm.timings.cacheReadMs, 0),
          sessionMs: round(warm.timings.sessionMs, 0),
          loadTotalMs: round(warm.timings.totalMs, 0),
        },
        base: b0,
        personal: p0,
        personalOverBase: round(p0.decodeTokensPerSecond / b0.decodeTokensPerSecond, 3),
        adapterBytes: swap.bytes,
        swapMedianMs: {
          decodeAndSet: round(swap.decodeAndSetMs, 3),
          setOnly: round(swap.setOnlyMs, 3),
        },
      };
    };
    const wasmRows = [];
    for (const g of graphs) {
      wasmRows.push(await runBackend("wasm", "main", ids, TOKENS, REPEATS, g));
      console.log(JSON.stringify({ "chromium-wasm": wasmRows.at(-1) }, null, 1));
    }
    results["chromium-wasm"] = wasmRows;
    results["chromium-webgpu-swiftshader"] = await runBackend(
      "webgpu",
      "tiny",
      tinyIds,
      WEBGPU_TOKENS,
      WEBGPU_REPEATS,
    );
    console.log(
      JSON.stringify(
        { "chromium-webgpu-swiftshader": results["chromium-webgpu-swiftshader"] },
        null,
        1,
      ),
    );
    results.chromium = browser.context.browser()?.version() ?? "chromium";
  } finally {
    await browser.close();
    await server.close();
    rmSync(adaptersDir, { recursive: true, force: true });
  }
}

(results.loadAverage as { end: number }).end = round(loadavg()[0] ?? Number.NaN);
await recordClientGraph(modelDir, results);
if (args.out !== undefined) writeFileSync(args.out, `${JSON.stringify(results, null, 1)}\n`);
console.log(JSON.stringify(results));
