// bench/results/client-graph.json: the old (traced fp32) vs new (fused, default) client graph in
// one file, written only by the benchmarks: bench:client fills the download, node counts and the
// Node/WASM rows; bench:webgpu (on a GPU machine) the WebGPU and transformers.js rows.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const REPO = join(import.meta.dirname, "..");
export const CLIENT_GRAPH_RESULTS = join(REPO, "bench", "results", "client-graph.json");

interface Row {
  graph?: string;
  base: { decodeTokensPerSecond: number };
  personal: { decodeTokensPerSecond: number };
  personalOverBase: number;
  warmStart?: { downloadedBytes?: number };
}
interface ManifestLike {
  files: { name: string; role: string; bytes: number }[];
  graphs?: { name: string; file: string; data_files: string[]; devices?: string[] }[];
}

/** Node count of an ONNX file (its graph only; the weights are not read). */
export function onnxNodes(path: string): number | null {
  const python = join(REPO, ".venv", "bin", "python");
  if (!existsSync(python) || !existsSync(path)) return null;
  const code =
    "import onnx,sys; print(len(onnx.load(sys.argv[1], load_external_data=False).graph.node))";
  const r = spawnSync(python, ["-c", code, path], { encoding: "utf8" });
  return r.status === 0 ? Number(r.stdout.trim()) : null;
}

/** Bytes a client fetches for a graph: the graph, its data files and every non-graph file. */
export function downloadBytes(m: ManifestLike, graph: string): number {
  const g = m.graphs?.find((x) => x.name === graph);
  if (g === undefined) return Number.NaN;
  const graphFiles = new Set(m.graphs?.flatMap((x) => [x.file, ...x.data_files]));
  const wanted = new Set([g.file, ...g.data_files]);
  return m.files
    .filter((f) => f.role !== "reference" && f.role !== "onnx-train")
    .filter((f) => !graphFiles.has(f.name) || wanted.has(f.name))
    .reduce((s, f) => s + f.bytes, 0);
}

/** The manifest's default graph for a device: the first one listing it (the client's choice). */
export function defaultGraph(m: ManifestLike, device: string): string | undefined {
  return m.graphs?.find((g) => g.devices?.includes(device))?.name;
}

/** Old (fp32, the first row) and new (`graph`'s row) of one runtime's rows. */
function pair(rows: unknown, graph: string | undefined): { old?: Row; new?: Row } {
  if (!Array.isArray(rows) || rows.length < 2) return {};
  const found = (rows as Row[]).find((r) => r.graph === graph);
  return { old: rows[0] as Row, new: found ?? (rows[1] as Row) };
}

function merge(update: Record<string, unknown>): Record<string, unknown> {
  const current = existsSync(CLIENT_GRAPH_RESULTS)
    ? (JSON.parse(readFileSync(CLIENT_GRAPH_RESULTS, "utf8")) as Record<string, unknown>)
    : {};
  const out: Record<string, unknown> = { ...current };
  for (const [k, v] of Object.entries(update)) {
    const c = current[k];
    out[k] =
      c !== null &&
      typeof c === "object" &&
      v !== null &&
      typeof v === "object" &&
      !Array.isArray(v)
        ? { ...(c as object), ...(v as object) }
        : v;
  }
  mkdirSync(dirname(CLIENT_GRAPH_RESULTS), { recursive: true });
  writeFileSync(CLIENT_GRAPH_RESULTS, `${JSON.stringify(out, null, 1)}\n`);
  return out;
}

/** bench:client's part: download, nodes, Node and Chromium-WASM old vs new, second visit. "New" is
 * each runtime's default graph (the first listing its device); `default_graph`, `download_bytes`
 * and `nodes.new` are the WASM default's, `*_cpu` the CPU default's. */
export function recordClientGraph(modelDir: string, results: Record<string, unknown>): void {
  const m = JSON.parse(readFileSync(join(modelDir, "manifest.json"), "utf8")) as ManifestLike;
  const cpuGraph = defaultGraph(m, "cpu");
  const wasmGraph = defaultGraph(m, "wasm");
  const def = m.graphs?.find((g) => g.name === wasmGraph);
  if (def === undefined || results.model === "tiny-llama") return;
  const node = pair(results["node-cpu"], cpuGraph);
  // Chromium's WASM rows when a browser ran, else onnxruntime-web's WASM build in Node.
  const wasm = pair(results["chromium-wasm"] ?? results["node-wasm"], wasmGraph);
  const cpuDef = m.graphs?.find((g) => g.name === cpuGraph);
  const decode = (p: { old?: Row; new?: Row }) =>
    p.old === undefined
      ? undefined
      : {
          old_personal: p.old.personal.decodeTokensPerSecond,
          new_personal: p.new?.personal.decodeTokensPerSecond,
          new_base: p.new?.base.decodeTokensPerSecond,
          speedup_personal:
            (p.new?.personal.decodeTokensPerSecond ?? 0) / p.old.personal.decodeTokensPerSecond,
        };
  const update: Record<string, unknown> = {
    model: results.model,
    default_graph: def.name,
    default_graph_cpu: cpuGraph,
    download_bytes: downloadBytes(m, def.name),
    download_bytes_cpu: cpuGraph === undefined ? null : downloadBytes(m, cpuGraph),
    download_bytes_fp32: downloadBytes(m, "fp32"),
    nodes: {
      old: onnxNodes(join(modelDir, "model.onnx")),
      new: onnxNodes(join(modelDir, def.file)),
      ...(cpuDef !== undefined ? { new_cpu: onnxNodes(join(modelDir, cpuDef.file)) } : {}),
    },
    personal_over_base: {
      ...(node.new ? { node: node.new.personalOverBase } : {}),
      ...(wasm.new ? { wasm: wasm.new.personalOverBase } : {}),
    },
    node_decode_tok_s: decode(node),
    wasm_decode_tok_s: decode(wasm),
    wasm_runtime:
      results["chromium-wasm"] !== undefined ? "chromium" : "node (onnxruntime-web wasm)",
    client_machine: results.machine,
    client_date: results.date,
    client_load_average: results.loadAverage,
    ...(results["chromium-wasm-threads"] !== undefined
      ? { wasm_threads: results["chromium-wasm-threads"] }
      : {}),
  };
  if (wasm.new?.warmStart?.downloadedBytes !== undefined)
    update.second_visit_weight_bytes = wasm.new.warmStart.downloadedBytes;
  merge(update);
}

/** bench:webgpu's part (GPU machine): WebGPU decode old vs new, personal/base, transformers.js. */
export function recordWebGpu(update: {
  webgpu_decode_tok_s: { old: number | null; new: number | null };
  personal_over_base_webgpu: number | null;
  tjs_tok_s: number | null;
  device: string;
  date: string;
}): void {
  merge({
    webgpu_decode_tok_s: update.webgpu_decode_tok_s,
    personal_over_base: { webgpu: update.personal_over_base_webgpu },
    tjs_tok_s: update.tjs_tok_s,
    webgpu_device: update.device,
    webgpu_date: update.date,
  });
}
