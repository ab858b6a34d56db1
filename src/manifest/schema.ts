// The manifest.json schema (docs/manifest.md, docs/contracts.md). Objects are strict except
// `source` and `config`, which describe provenance and architecture and may carry more keys.

import { z } from "zod";
import { MAX_MODEL_ID_BYTES, MAX_MODULES, MAX_RANK } from "../format/index.ts";

/** The manifest schema this code reads. */
export const MANIFEST_SCHEMA_VERSION = 1;

/** File roles clients know how to use (`onnx-train` and `reference` are fetched only on request). */
export const FILE_ROLES = [
  "onnx",
  "onnx-data",
  "onnx-train",
  "factors",
  "tokenizer",
  "tokenizer-config",
  "reference",
] as const;

/** Names of the training-step graph's inputs and outputs (docs/on-device-training.md). */
export const TRAIN_INPUTS = ["input_ids", "attention_mask", "labels", "R"] as const;
export const TRAIN_OUTPUTS = ["loss", "grad_R"] as const;

const MODEL_ID = /^[a-z0-9][a-z0-9._-]*$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const CREATED = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z$/;
/** A plain file name inside the model folder: no directories, no dot-files. */
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

const count = z.int().min(0);
const positive = z.int().min(1);
const text = z.string().min(1);
const fileName = z.string().regex(FILE_NAME, "expected a plain file name");
const digest = z.string().regex(DIGEST, 'expected "sha256:" and 64 lowercase hex digits');
const revision = z.string().nullable();

const source = z.discriminatedUnion("kind", [
  z.looseObject({
    kind: z.literal("pypi"),
    package: text,
    version: z.string().nullable(),
    file: text,
    revision,
  }),
  z.looseObject({ kind: z.literal("hf-folder"), path: text, revision }),
  z.looseObject({ kind: z.literal("gguf"), path: text, file: text, revision }),
  z.looseObject({ kind: z.literal("random"), preset: text, seed: z.int(), revision }),
]);

const module = z.strictObject({ name: text, in: positive, out: positive });

const factors = z.strictObject({
  file: fileName,
  sha256: digest,
  dtype: z.literal("F32"),
  // "population": the span of many users' LoRA updates (scripts/loraxs/population.py), not the weight's SVD
  svd: z.strictObject({
    method: z.enum(["randomized", "exact", "population"]),
    oversample: count.optional(),
    niter: count.optional(),
    seed: z.int(),
    factor_users: count.optional(),
    factor_data: text.optional(),
  }),
});

const WEIGHTS_DTYPES = ["F32", "F16", "BF16", "Q8", "Q4"] as const;

const onnx = z
  .strictObject({
    file: fileName,
    data_file: fileName.nullable(),
    opset: positive,
    weights_dtype: z.enum(WEIGHTS_DTYPES),
    quantization: text,
  })
  .nullable();

/** The training-step graph (loss, dL/dR) of a decoder: one static [batch, seq] export. */
const onnxTrain = z.strictObject({
  file: fileName,
  data_file: fileName.nullable(),
  opset: positive,
  inputs: z.tuple([
    z.literal(TRAIN_INPUTS[0]),
    z.literal(TRAIN_INPUTS[1]),
    z.literal(TRAIN_INPUTS[2]),
    z.literal(TRAIN_INPUTS[3]),
  ]),
  outputs: z.tuple([z.literal(TRAIN_OUTPUTS[0]), z.literal(TRAIN_OUTPUTS[1])]),
  shapes: z.strictObject({ batch: positive, seq: z.int().min(2) }),
  ignore_index: z.int(),
  check: z
    .strictObject({
      runtime: text,
      reference: text,
      loss: z.number(),
      loss_rel_error: z.number().min(0),
      grad_max_abs_error: z.number().min(0),
      grad_rel_error: z.number().min(0),
      grad_abs_max: z.number().min(0),
      tolerance: z.strictObject({ loss: z.number().gt(0), grad: z.number().gt(0) }),
    })
    .nullable(),
});

/** Where a graph variant runs: the client's backends (docs/manifest.md, `graphs`). */
export const GRAPH_DEVICES = ["webgpu", "wasm", "cpu"] as const;

/** One graph variant: its files, the devices it is for, its number types and its check. */
const graph = z.strictObject({
  name: z
    .string()
    .regex(MODEL_ID, "expected a graph name: lowercase letters, digits, '.', '_', '-'"),
  file: fileName,
  data_files: z.array(fileName),
  devices: z.array(z.enum(GRAPH_DEVICES)).min(1),
  dtype: z.enum(["float32", "float16"]),
  weights_dtype: z.enum(WEIGHTS_DTYPES),
  quantization: text,
  opset: positive,
  inputs: z.array(text).min(1),
  /** Most prompt tokens one run may take (a graph whose attention kernel needs it). */
  prefill_chunk: z.number().int().min(1).optional(),
  check: z
    .strictObject({
      runtime: text,
      reference: text,
      max_abs_error: z.number().min(0),
      greedy_equal: z.boolean(),
      cases: count,
    })
    .nullable(),
});

const io = z.strictObject({
  inputs: z.array(text).min(1),
  outputs: z.array(text).min(1),
  R: z.strictObject({
    name: z.literal("R"),
    shape: z.tuple([positive, positive, positive]),
    dtype: z.literal("float32"),
  }),
});

const tokenId = count.nullable();
const decoderConfig = z.looseObject({
  hidden_size: positive,
  num_layers: positive,
  num_attention_heads: positive,
  num_kv_heads: positive,
  head_dim: positive,
  vocab_size: positive,
  bos_token_id: tokenId,
  eos_token_id: tokenId,
  max_position_embeddings: positive,
});
const encoderConfig = z.looseObject({
  hidden_size: positive,
  num_layers: positive,
  num_attention_heads: positive,
  vocab_size: positive,
  max_position_embeddings: positive,
  type_vocab_size: positive,
  pad_token_id: tokenId,
  cls_token_id: tokenId,
  sep_token_id: tokenId,
  pooling: z.literal("mean"),
  normalize: z.boolean(),
});

const file = z.strictObject({
  name: fileName,
  role: z.enum(FILE_ROLES),
  sha256: digest,
  bytes: count,
});

const check = z
  .strictObject({
    runtime: text,
    reference: text,
    max_abs_error: z.number().min(0),
    tolerance: z.number().gt(0),
    cases: count,
  })
  .nullable();

const fields = {
  schema_version: z.literal(MANIFEST_SCHEMA_VERSION),
  id: z
    .string()
    .max(MAX_MODEL_ID_BYTES)
    .regex(MODEL_ID, "expected a model id: lowercase letters, digits, '.', '_', '-'"),
  architecture: text,
  source,
  rank: z.int().min(1).max(MAX_RANK),
  targets: text,
  modules: z.array(module).min(1).max(MAX_MODULES),
  factors,
  onnx,
  io,
  tokenizer: z.strictObject({ files: z.array(fileName), chat_template: z.boolean() }),
  files: z.array(file),
  check,
  onnx_train: onnxTrain.optional(),
  graphs: z.array(graph).min(1).optional(),
  created: z.string().regex(CREATED, "expected UTC ISO 8601 like 2026-11-28T00:00:00Z"),
};

/** Rules that tie fields together; run once every field is well-formed. */
function consistent(
  m: z.infer<typeof decoder> | z.infer<typeof encoder>,
  ctx: z.RefinementCtx,
): void {
  const issue = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: "custom", path, message, input: m });
  const seen = new Set<string>();
  m.modules.forEach((mod, i) => {
    if (seen.has(mod.name))
      issue(["modules", i, "name"], `module ${JSON.stringify(mod.name)} is listed twice`);
    seen.add(mod.name);
    if (m.rank > Math.min(mod.in, mod.out)) {
      issue(
        ["rank"],
        `rank ${m.rank} exceeds min(in, out) = ${Math.min(mod.in, mod.out)} of ${mod.name}`,
      );
    }
  });
  const [M, r1, r2] = m.io.R.shape;
  if (M !== m.modules.length || r1 !== m.rank || r2 !== m.rank) {
    issue(
      ["io", "R", "shape"],
      `io.R.shape [${M}, ${r1}, ${r2}] is not [modules, rank, rank] = [${m.modules.length}, ${m.rank}, ${m.rank}]`,
    );
  }
  if (!m.io.inputs.includes("R")) issue(["io", "inputs"], 'io.inputs does not name the "R" input');
  const names = new Set<string>();
  m.files.forEach((f, i) => {
    if (names.has(f.name))
      issue(["files", i, "name"], `file ${JSON.stringify(f.name)} is listed twice`);
    names.add(f.name);
  });
  const factorsEntry = m.files.find((f) => f.name === m.factors.file);
  if (factorsEntry === undefined) {
    issue(["files"], `files does not list the factors file ${JSON.stringify(m.factors.file)}`);
  } else if (factorsEntry.sha256 !== m.factors.sha256) {
    issue(
      ["factors", "sha256"],
      `factors.sha256 ${m.factors.sha256} differs from files' entry ${factorsEntry.sha256}`,
    );
  }
  if (m.onnx !== null) {
    for (const [key, name] of [
      ["file", m.onnx.file],
      ["data_file", m.onnx.data_file],
    ] as const) {
      if (name !== null && !names.has(name))
        issue(["onnx", key], `files does not list ${JSON.stringify(name)}`);
    }
  }
  if (m.onnx_train !== undefined) {
    if (m.family !== "decoder")
      issue(["onnx_train"], `onnx_train is for decoders; family is ${JSON.stringify(m.family)}`);
    const entry = m.files.find((f) => f.name === m.onnx_train?.file);
    if (entry?.role !== "onnx-train") {
      issue(
        ["onnx_train", "file"],
        `files does not list ${JSON.stringify(m.onnx_train.file)} with role "onnx-train"`,
      );
    }
    const data = m.onnx_train.data_file;
    if (data !== null && !names.has(data))
      issue(["onnx_train", "data_file"], `files does not list ${JSON.stringify(data)}`);
  }
  consistentGraphs(m, issue);
}

/** Each graph variant's files are listed with the right roles; names are unique; R is an input. */
function consistentGraphs(
  m: z.infer<typeof decoder> | z.infer<typeof encoder>,
  issue: (path: (string | number)[], message: string) => void,
): void {
  const roles = new Map(m.files.map((f) => [f.name, f.role]));
  const seen = new Set<string>();
  (m.graphs ?? []).forEach((g, i) => {
    if (seen.has(g.name))
      issue(["graphs", i, "name"], `graph ${JSON.stringify(g.name)} is listed twice`);
    seen.add(g.name);
    if (roles.get(g.file) !== "onnx")
      issue(
        ["graphs", i, "file"],
        `files does not list ${JSON.stringify(g.file)} with role "onnx"`,
      );
    g.data_files.forEach((name, j) => {
      if (roles.get(name) !== "onnx-data") {
        issue(
          ["graphs", i, "data_files", j],
          `files does not list ${JSON.stringify(name)} with role "onnx-data"`,
        );
      }
    });
    if (!g.inputs.includes("R"))
      issue(["graphs", i, "inputs"], 'the graph\'s inputs do not name the "R" input');
  });
}

const decoder = z.strictObject({ ...fields, family: z.literal("decoder"), config: decoderConfig });
const encoder = z.strictObject({ ...fields, family: z.literal("encoder"), config: encoderConfig });

export const manifestSchema = z
  .discriminatedUnion("family", [decoder, encoder])
  .superRefine(consistent);

export type Manifest = z.infer<typeof manifestSchema>;
