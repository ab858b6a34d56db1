// The manifest fields the client reads (docs/contracts.md, "Manifest").

export type FileRole =
  | "onnx"
  | "onnx-data"
  | "onnx-train"
  | "factors"
  | "tokenizer"
  | "tokenizer-config"
  | "reference";

export interface ManifestFile {
  name: string;
  role: FileRole | string;
  sha256: string;
  bytes: number;
}

export interface ClientManifest {
  schema_version: number;
  id: string;
  family: "decoder" | "encoder";
  architecture: string;
  rank: number;
  modules: { name: string; in: number; out: number }[];
  factors: { file: string; sha256: string };
  onnx: {
    file: string;
    data_file?: string | null;
    weights_dtype?: string;
    quantization?: string;
  } | null;
  io: {
    inputs: string[];
    outputs: string[];
    R: { name: string; shape: number[]; dtype: string };
  };
  config: {
    hidden_size: number;
    num_layers: number;
    num_attention_heads?: number;
    num_kv_heads?: number;
    head_dim?: number;
    vocab_size: number;
    bos_token_id?: number | null;
    eos_token_id?: number | number[] | null;
    max_position_embeddings?: number;
  };
  tokenizer?: { files: string[]; chat_template?: boolean };
  files: ManifestFile[];
  /** The training-step graph (decoders prepared with --train-step; docs/on-device-training.md). */
  onnx_train?: OnnxTrain;
  /** Graph variants per device (absent in older manifests: `onnx` is the only graph). */
  graphs?: GraphVariant[];
}

/** One graph variant (docs/manifest.md, `graphs`). */
export interface GraphVariant {
  name: string;
  file: string;
  data_files: string[];
  devices: string[];
  dtype: string;
  weights_dtype: string;
  quantization: string;
  opset: number;
  inputs: string[];
  check: Record<string, unknown> | null;
}

export interface OnnxTrain {
  file: string;
  /** The inference graph's weights file the step graph reads (shared, downloaded once). */
  data_file: string | null;
  opset: number;
  inputs: string[];
  outputs: string[];
  shapes: { batch: number; seq: number };
  ignore_index: number;
  check: Record<string, unknown> | null;
}

const SHA256_PATTERN = /^sha256:[0-9a-f]{64}$/;

function fail(path: string, value: unknown, expected: string): never {
  throw new TypeError(`manifest ${path} is ${JSON.stringify(value)}; expected ${expected}`);
}

/** Check the fields the client relies on (the full schema lives in src/manifest). */
export function checkManifest(json: unknown): ClientManifest {
  if (typeof json !== "object" || json === null) fail("", json, "an object");
  const m = json as ClientManifest;
  if (typeof m.id !== "string") fail("id", m.id, "a string");
  if (m.family !== "decoder" && m.family !== "encoder")
    fail("family", m.family, '"decoder" | "encoder"');
  if (!Array.isArray(m.files)) fail("files", m.files, "an array");
  for (const [i, f] of m.files.entries()) {
    if (typeof f.name !== "string" || f.name.includes("/"))
      fail(`files[${i}].name`, f.name, "a file name");
    if (!SHA256_PATTERN.test(f.sha256)) fail(`files[${i}].sha256`, f.sha256, "sha256:<64 hex>");
    if (!Number.isSafeInteger(f.bytes) || f.bytes < 0)
      fail(`files[${i}].bytes`, f.bytes, "a byte count");
  }
  if (m.graphs !== undefined) {
    if (!Array.isArray(m.graphs)) fail("graphs", m.graphs, "an array");
    for (const [i, g] of m.graphs.entries()) {
      if (typeof g.name !== "string" || typeof g.file !== "string")
        fail(`graphs[${i}]`, g, "{name, file, data_files, devices, …}");
      if (!Array.isArray(g.data_files)) fail(`graphs[${i}].data_files`, g.data_files, "an array");
      if (!Array.isArray(g.devices)) fail(`graphs[${i}].devices`, g.devices, "an array");
    }
  }
  const shape = m.io?.R?.shape;
  if (!Array.isArray(shape) || shape.length !== 3) fail("io.R.shape", shape, "[M, r, r]");
  if (shape[0] !== m.modules.length || shape[1] !== m.rank || shape[2] !== m.rank) {
    fail("io.R.shape", shape, `[${m.modules.length}, ${m.rank}, ${m.rank}] (modules, rank)`);
  }
  return m;
}
