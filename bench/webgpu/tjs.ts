// The peer: transformers.js (@huggingface/transformers) running the plain base graph on the same
// WebGPU device. Its bundle maps `onnxruntime-node` to the same onnxruntime-web build the client
// uses (bench/webgpu/carry.mjs), so both run one onnxruntime instance and one GPUDevice.
import { mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Ort } from "../../src/client/backend/index.ts";
import type { DecodeTiming } from "./raw.ts";

interface TjsModel {
  generate(options: Record<string, unknown>): Promise<{ tolist(): bigint[][] }>;
  dispose(): Promise<unknown>;
}
interface Tjs {
  env: { allowRemoteModels: boolean; allowLocalModels: boolean; localModelPath: string };
  Tensor: new (type: string, data: BigInt64Array, dims: number[]) => unknown;
  AutoModelForCausalLM: {
    from_pretrained(id: string, options: Record<string, unknown>): Promise<TjsModel>;
  };
}

/** A plain graph (no R) and the data files it names, relative to the model folder. */
export interface PlainGraph {
  graph: string;
  data: string[];
}

/** A transformers.js model folder (config.json, onnx/model.onnx + data) made of links to ours. */
function layout(modelDir: string, work: string, plain: PlainGraph): string {
  const name = `plain-${plain.graph.replace(/[^a-z0-9]+/gi, "-")}`;
  const dir = join(work, name);
  mkdirSync(join(dir, "onnx"), { recursive: true });
  const link = (from: string, to: string) => symlinkSync(resolve(modelDir, from), join(dir, to));
  link("hf/config.json", "config.json");
  link(plain.graph, "onnx/model.onnx");
  for (const d of plain.data) link(d, `onnx/${basename(d)}`);
  return name;
}

export async function tjsDecode(
  ort: Ort,
  bundle: string,
  modelDir: string,
  plain: PlainGraph,
  work: string,
  device: string,
  prompt: readonly number[],
  newTokens: number,
  repeats: number,
): Promise<{ loadMs: number; runs: DecodeTiming[] }> {
  // Left unset, transformers.js points onnxruntime at its CDN (no network here); onnxruntime is
  // already initialised by the client's session, so any local path does.
  ort.env.wasm.wasmPaths ??= new URL(".", import.meta.resolve("onnxruntime-web/webgpu")).href;
  const tjs = (await import(pathToFileURL(resolve(bundle)).href)) as Tjs;
  // In Node transformers.js hands onnxruntime a file path (onnxruntime-node reads it);
  // onnxruntime-web would fetch() it, so paths are read here and passed as bytes.
  const Session = ort.InferenceSession as unknown as {
    create(model: unknown, options?: unknown): Promise<unknown>;
  };
  const create = Session.create.bind(Session);
  Session.create = (model, options) =>
    create(typeof model === "string" ? new Uint8Array(readFileSync(model)) : model, options);
  const id = layout(modelDir, work, plain);
  tjs.env.allowRemoteModels = false;
  tjs.env.allowLocalModels = true;
  tjs.env.localModelPath = `${resolve(work)}/`;
  let t = performance.now();
  const model = await tjs.AutoModelForCausalLM.from_pretrained(id, {
    device: device === "wasm" ? "cpu" : device, // its Node device list names WASM "cpu"
    dtype: "fp32",
    local_files_only: true,
    session_options: {
      externalData: plain.data.map((d) => ({ path: basename(d), data: `onnx/${basename(d)}` })),
    },
  });
  const loadMs = performance.now() - t;
  const ids = BigInt64Array.from(prompt, (x) => BigInt(x));
  const mask = BigInt64Array.from(prompt, () => 1n);
  const runs: DecodeTiming[] = [];
  for (let r = 0; r < repeats + 1; r++) {
    const stamps: number[] = [];
    t = performance.now();
    const out = await model.generate({
      input_ids: new tjs.Tensor("int64", ids, [1, prompt.length]),
      attention_mask: new tjs.Tensor("int64", mask, [1, prompt.length]),
      max_new_tokens: newTokens,
      min_new_tokens: newTokens,
      do_sample: false,
      // put() gets the prompt first, then each new token.
      streamer: { put: () => stamps.push(performance.now()), end: () => {} },
    });
    const tokens = (out.tolist()[0] ?? []).slice(prompt.length).map(Number);
    const first = stamps[1] ?? Number.NaN;
    const last = stamps[stamps.length - 1] ?? Number.NaN;
    if (r > 0)
      runs.push({
        prefillMs: first - t,
        tokensPerSecond: (tokens.length - 1) / ((last - first) / 1000),
        tokens,
      });
  }
  await model.dispose();
  return { loadMs, runs };
}
