// Browser side of the client tests and benchmarks: the real client bundle, driven by
// playwright-core through `window.loraxsPage`.
import {
  cacheStorageCache,
  type Device,
  loadModel,
  type PersonalModel,
  selectBackend,
} from "../../../src/client/index.ts";
import { decodeAdapter } from "../../../src/format/index.ts";
import type { ReferenceCase } from "../../reference.ts";
import { median } from "../../stats.ts";

type Case = ReferenceCase;

const WASM_PATHS = "/ort/";
let model: PersonalModel | undefined;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++)
    max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  return a.length === b.length ? max : Number.POSITIVE_INFINITY;
}

async function bytes(url: string): Promise<Uint8Array> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

const page = {
  async backend(device: Device = "auto") {
    const b = await selectBackend({ device, wasmPaths: WASM_PATHS });
    return { device: b.device, reason: b.reason, runtime: b.runtime };
  },

  /** Load (or reload) the model; Cache Storage keeps the files between loads. */
  async load(modelUrl: string, device: Device, graph?: string) {
    await model?.dispose();
    model = await loadModel(modelUrl, {
      device,
      graph,
      wasmPaths: WASM_PATHS,
      cache: await cacheStorageCache("loraxs-test"),
    });
    return {
      device: model.backend.device,
      reason: model.backend.reason,
      timings: model.timings,
      rLocation: model.rLocation,
      graph: model.graph.name,
    };
  },

  /** Every reference case in one session (base, adapters, base again): errors and greedy tokens. */
  async reference(folder: string) {
    if (model === undefined) throw new Error("load first");
    const ref = (await (await fetch(`${folder}/reference.json`)).json()) as {
      model: string;
      factors: string;
      cases: Case[];
    };
    const seen = new Set<string>();
    const out: {
      name: string;
      error: number;
      greedy: number[] | null;
      expected: number[];
      rLocation: string;
      swapMs: number;
    }[] = [];
    for (const c of [...ref.cases, ref.cases[0] as Case]) {
      const adapter =
        c.adapter === undefined
          ? null
          : decodeAdapter(await bytes(`${folder}/${c.adapter}`), model.expectations);
      const t = performance.now();
      model.setAdapter(adapter, c.name);
      const swapMs = performance.now() - t;
      const [logits] = await model.forward(c.input_ids, c.attention_mask);
      // The repeated base case checks that swapping back restores the logits; its tokens were
      // already compared on the first pass (SwiftShader takes seconds per token).
      const greedy: number[] | null = seen.has(c.name) ? null : [];
      seen.add(c.name);
      if (greedy !== null) {
        for await (const token of model.tokens(
          { ids: c.input_ids[0] ?? [] },
          { maxTokens: c.greedy?.length ?? 0, stopIds: new Set() },
        )) {
          greedy.push(token);
        }
      }
      out.push({
        name: c.name,
        error: maxAbsDiff(logits ?? [], c.logits_last?.[0] ?? []),
        greedy,
        expected: c.greedy ?? [],
        rLocation: model.rLocation,
        swapMs,
      });
    }
    return out;
  },

  /** Last-position logits of `ids` prefilled in one run, then `maxTokens` greedy tokens (R = 0). */
  async prompt(ids: number[], maxTokens: number) {
    if (model === undefined) throw new Error("load first");
    model.setAdapter(null);
    const [logits] = await model.forward([ids], [ids.map(() => 1)]);
    const tokens: number[] = [];
    for await (const token of model.tokens({ ids }, { maxTokens, stopIds: new Set() }))
      tokens.push(token);
    return {
      logits: Array.from(logits ?? []),
      tokens,
      graph: model.graph.name,
      kvCacheRows: model.kvCacheRows,
    };
  },

  /** Decode timing: time to first token and tokens/s after it, for R = 0 or a given adapter. */
  async decodeTiming(promptIds: number[], maxTokens: number, adapterUrl?: string) {
    if (model === undefined) throw new Error("load first");
    model.setAdapter(
      adapterUrl === undefined ? null : decodeAdapter(await bytes(adapterUrl), model.expectations),
    );
    const start = performance.now();
    let first = 0;
    let n = 0;
    for await (const _ of model.tokens({ ids: promptIds }, { maxTokens, stopIds: new Set() })) {
      if (n === 0) first = performance.now() - start;
      n++;
    }
    const total = performance.now() - start;
    return { ttftMs: first, tokens: n, decodeTokensPerSecond: (n - 1) / ((total - first) / 1000) };
  },

  /** Median time of `setAdapter` over `rounds` swaps between two decoded adapters. */
  async swapTiming(urls: [string, string], rounds: number) {
    if (model === undefined) throw new Error("load first");
    const m = model;
    const files = await Promise.all(urls.map((u) => bytes(u)));
    const decoded = files.map((f) => decodeAdapter(f, m.expectations));
    const decodeAndSet: number[] = [];
    const setOnly: number[] = [];
    for (let i = 0; i < rounds; i++) {
      let t = performance.now();
      m.setAdapter(decodeAdapter(files[i % 2] as Uint8Array, m.expectations));
      decodeAndSet.push(performance.now() - t);
      t = performance.now();
      m.setAdapter(decoded[i % 2] ?? null);
      setOnly.push(performance.now() - t);
    }
    return {
      decodeAndSetMs: median(decodeAndSet),
      setOnlyMs: median(setOnly),
      bytes: files[0]?.byteLength ?? 0,
    };
  },
};

(globalThis as unknown as { loraxsPage: typeof page }).loraxsPage = page;
export type LoraxsPage = typeof page;
