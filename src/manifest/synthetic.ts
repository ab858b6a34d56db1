// A manifest for a model with random weights: what benchmarks and tests publish or read when
// they need a model's contract (modules, rank, factors digest) but no graph to run. Typed by the
// schema, so a schema change fails their typecheck here instead of their first request.

import type { Manifest } from "./schema.ts";

type Module = Manifest["modules"][number];

export interface SyntheticModel {
  id: string;
  family?: "decoder" | "encoder";
  modules: Module[];
  rank: number;
  /** The factors file's digest (`sha256:<hex>`) and size. */
  factors: { sha256: string; bytes: number };
  /** Architecture sizes; token ids, pooling and the rest of `config` are fixed. */
  config: {
    hidden_size: number;
    num_layers: number;
    num_attention_heads: number;
    /** Decoders only. */
    num_kv_heads: number;
    /** Decoders only. */
    head_dim: number;
    vocab_size: number;
    max_position_embeddings: number;
  };
  /** `source.preset` (default: the id). */
  preset?: string;
  /** A graph (default none) and the files it needs, listed after the factors file. */
  onnx?: Manifest["onnx"];
  files?: Manifest["files"];
  tokenizer?: Manifest["tokenizer"];
}

const DECODER_IO = {
  inputs: [
    "input_ids",
    "attention_mask",
    "position_ids",
    "R",
    "past_key_values.{i}.key",
    "past_key_values.{i}.value",
  ],
  outputs: ["logits", "present.{i}.key", "present.{i}.value"],
};
const ENCODER_IO = {
  inputs: ["input_ids", "attention_mask", "token_type_ids", "R"],
  outputs: ["last_hidden_state", "sentence_embedding"],
};

/** A valid manifest (docs/contracts.md) for `model`; `targets` names the modules' own kinds. */
export function syntheticManifest(model: SyntheticModel): Manifest {
  const { id, modules, rank, config: c } = model;
  const common = {
    source: { kind: "random" as const, preset: model.preset ?? id, seed: 0, revision: null },
    rank,
    targets: [...new Set(modules.map((m) => m.name.split(".").at(-1)))].join(","),
    modules,
    factors: {
      file: "factors.safetensors",
      sha256: model.factors.sha256,
      dtype: "F32" as const,
      svd: { method: "exact" as const, oversample: 0, niter: 0, seed: 0 },
    },
    onnx: model.onnx ?? null,
  };
  const R = {
    name: "R" as const,
    shape: [modules.length, rank, rank] as [number, number, number],
    dtype: "float32" as const,
  };
  const rest = {
    tokenizer: model.tokenizer ?? {
      files: ["tokenizer.json", "tokenizer_config.json"],
      chat_template: true,
    },
    files: [
      {
        name: "factors.safetensors",
        role: "factors" as const,
        sha256: model.factors.sha256,
        bytes: model.factors.bytes,
      },
      ...(model.files ?? []),
    ],
    check: null,
    created: "2026-11-28T00:00:00Z",
  };
  if (model.family === "encoder") {
    return {
      schema_version: 1,
      id,
      family: "encoder",
      architecture: "BertModel",
      ...common,
      io: { ...ENCODER_IO, R },
      config: {
        hidden_size: c.hidden_size,
        num_layers: c.num_layers,
        num_attention_heads: c.num_attention_heads,
        vocab_size: c.vocab_size,
        max_position_embeddings: c.max_position_embeddings,
        type_vocab_size: 2,
        pad_token_id: 0,
        cls_token_id: 1,
        sep_token_id: 2,
        pooling: "mean",
        normalize: true,
      },
      ...rest,
    };
  }
  return {
    schema_version: 1,
    id,
    family: "decoder",
    architecture: "LlamaForCausalLM",
    ...common,
    io: { ...DECODER_IO, R },
    config: {
      hidden_size: c.hidden_size,
      num_layers: c.num_layers,
      num_attention_heads: c.num_attention_heads,
      num_kv_heads: c.num_kv_heads,
      head_dim: c.head_dim,
      vocab_size: c.vocab_size,
      bos_token_id: 1,
      eos_token_id: 2,
      max_position_embeddings: c.max_position_embeddings,
    },
    ...rest,
  };
}
