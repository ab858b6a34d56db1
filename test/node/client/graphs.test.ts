import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { caseAdapter, caseGreedy, maxAbsDiff } from "../../../harness/reference.ts";
import { chooseGraph } from "../../../src/client/graph-choice.ts";
import {
  ClientError,
  type ClientManifest,
  fsCache,
  loadModel,
  memoryCache,
  type Progress,
} from "../../../src/client/index.ts";
import { canRun, smollm2 } from "../../shared/requirements.ts";
import { serveFolder, serveModel, useTempDir } from "./helpers/served-model.ts";

const m = serveModel("tiny-llama");
let manifest: ClientManifest;

beforeAll(async () => {
  manifest = (await (await fetch(m.manifestUrl)).json()) as ClientManifest;
});
async function fetchedFiles(graph?: string): Promise<{ files: Set<string>; name: string }> {
  const files = new Set<string>();
  const model = await loadModel(m.manifestUrl, {
    device: "wasm",
    cache: memoryCache(),
    graph,
    onProgress: (p: Progress) => files.add(p.file),
  });
  const name = model.graph.name;
  const c = m.ref.cases[1];
  if (c === undefined) throw new Error("no case");
  model.setAdapter(caseAdapter(m.dir, c, m.ref), c.name);
  const [logits] = await model.forward(c.input_ids, c.attention_mask);
  expect(maxAbsDiff(logits as Float32Array, c.logits_last?.[0] as number[])).toBeLessThan(5e-5);
  await model.dispose();
  return { files, name };
}

describe("graph variants", () => {
  it("runs the fused graph by default and fetches none of the fp32 graph's files", async () => {
    const { files, name } = await fetchedFiles();
    expect(name).toBe("fused");
    const fused = manifest.graphs?.[0];
    expect(fused?.name).toBe("fused");
    for (const f of [fused?.file, ...(fused?.data_files ?? [])])
      expect(files.has(f as string)).toBe(true);
    expect(files.has("model.onnx")).toBe(false);
    expect(files.has("model.onnx.data")).toBe(false);
  });

  it("runs the traced fp32 graph when asked, fetching only its files", async () => {
    const { files, name } = await fetchedFiles("fp32");
    expect(name).toBe("fp32");
    expect(files.has("model.onnx.data")).toBe(true);
    expect(files.has(manifest.graphs?.[0]?.file as string)).toBe(false);
  });

  it("prefills in the graph's chunks (fusedw: prefill_chunk 31), equal to one run, and refuses padded rows past them", async () => {
    const fusedw = manifest.graphs?.find((g) => g.name === "fusedw");
    expect(fusedw?.prefill_chunk).toBe(31);
    expect(manifest.graphs?.find((g) => g.name === "fused")?.prefill_chunk).toBeUndefined();
    // fusedw is WebGPU's graph; WASM runs it too, which checks the chunked path against fused's one run.
    const load = (graph: string) =>
      loadModel(m.manifestUrl, { device: "wasm", cache: memoryCache(), graph });
    const chunked = await load("fusedw");
    const whole = await load("fused");
    try {
      expect(chunked.graph.prefillChunk).toBe(31);
      const ids = Array.from(
        { length: 70 },
        (_, i) => (i * 7919 + 13) % manifest.config.vocab_size,
      );
      const [a] = await chunked.forward([ids]);
      const [b] = await whole.forward([ids]);
      expect(maxAbsDiff(a as Float32Array, b as Float32Array)).toBeLessThan(1e-4);
      const greedy = async (model: typeof whole) => {
        const out: number[] = [];
        for await (const t of model.tokens({ ids }, { maxTokens: 6 })) out.push(t);
        return out;
      };
      expect(await greedy(chunked)).toEqual(await greedy(whole));
      const padded = [ids, [...ids.slice(0, 40), ...Array(30).fill(0)]];
      const mask = [ids.map(() => 1), [...Array(40).fill(1), ...Array(30).fill(0)]];
      await expect(chunked.forward(padded, mask)).rejects.toThrow(/at most 31 tokens a run/);
      await expect(chunked.forward(padded, mask)).rejects.toMatchObject({
        code: "padded_rows_too_long",
      });
    } finally {
      await chunked.dispose();
      await whole.dispose();
    }
  });

  it("refuses a graph name the manifest does not have, listing the ones it has", async () => {
    await expect(
      loadModel(m.manifestUrl, {
        device: "wasm",
        cache: memoryCache(),
        graph: "q2",
      }),
    ).rejects.toThrow(/no graph "q2"; it has: fused, fusedw, fp32/);
    expect(() => chooseGraph(manifest, "wasm", "q2")).toThrow(ClientError);
  });

  it("picks by device, and an old manifest without graphs runs its onnx graph", () => {
    const onlyGpu = {
      ...manifest,
      graphs: [{ ...(manifest.graphs?.[0] as object), name: "gpu-only", devices: ["webgpu"] }],
    } as ClientManifest;
    expect(chooseGraph(onlyGpu, "webgpu").name).toBe("gpu-only");
    const fallback = chooseGraph(onlyGpu, "cpu");
    expect([fallback.name, fallback.file]).toEqual(["default", "model.onnx"]);
    expect(fallback.reason).toMatch(/no graph lists cpu/);
    const old = { ...manifest, graphs: undefined } as ClientManifest;
    expect(chooseGraph(old, "wasm")).toMatchObject({
      name: "default",
      file: "model.onnx",
      dataFiles: ["model.onnx.data"],
    });
  });
});

// SmolLM2 when `npm run prepare-model -- --preset smollm2-135m` has run (not part of CI: 0.5 GB).
const smol = join(process.cwd(), "models", "smollm2-135m");
const haveSmol = canRun(
  "SmolLM2 graphs",
  smollm2("model.q4f.onnx", "model.q4.onnx", "reference.json"),
);

// Defaults: q4 (MatMulNBits) on cpu, q4f (4-bit blocks folded to fp32 at session start) on wasm,
// where MatMulNBits has no fast kernel; q4f on cpu by name.
describe.skipIf(!haveSmol).each([
  ["cpu", undefined, "q4"],
  ["wasm", undefined, "q4f"],
  ["cpu", "q4f", "q4f"],
] as const)("SmolLM2 graph on %s (asked: %s)", (device, graph, expected) => {
  const s = serveFolder(() => smol);
  const cacheDir = useTempDir("loraxs-smol-");

  it("greedy tokens equal PyTorch's on every reference case, logits within 1e-3", async () => {
    const model = await loadModel(s.manifestUrl, {
      device,
      graph,
      cache: await fsCache(cacheDir.path),
    });
    expect(model.graph.name).toBe(expected);
    for (const c of s.ref.cases) {
      model.setAdapter(caseAdapter(s.dir, c, s.ref), c.name);
      const [logits] = await model.forward(c.input_ids, c.attention_mask);
      expect(maxAbsDiff(logits as Float32Array, c.logits_last?.[0] as number[])).toBeLessThan(1e-3);
      expect(await caseGreedy(model, c)).toEqual(c.greedy);
    }
    await model.dispose();
  }, 300_000);
});
