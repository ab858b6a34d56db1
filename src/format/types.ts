import type { Dtype } from "./dtype.ts";

/** A per-user classification head for an encoder: logits = e · weightᵀ + bias. */
export interface AdapterHead {
  /** [classes, hidden], row-major. */
  weight: Float32Array;
  /** [classes]. */
  bias: Float32Array;
  classes: number;
  hidden: number;
  labels?: string[];
}

/** What a writer needs. `R` is [modules, rank, rank], row-major, modules in manifest order. */
export interface AdapterInput {
  model: string;
  /** "sha256:<64 lowercase hex>" of the factors file R was trained against. */
  factors: string;
  rank: number;
  modules: number;
  R: Float32Array;
  head?: AdapterHead;
  /** Optional keys only: created, source, steps, note. */
  metadata?: Record<string, string>;
}

export interface EncodeOptions {
  /** Storage dtype of every tensor; F16 unless told. */
  dtype?: Dtype;
}

/** What a reader returns: the floats widened to float32 plus everything the header said. */
export interface Adapter {
  model: string;
  factors: string;
  rank: number;
  modules: number;
  dtype: Dtype;
  R: Float32Array;
  head?: AdapterHead;
  /** The whole `__metadata__` map, required keys included. */
  metadata: Record<string, string>;
  /** Size of the file in bytes. */
  bytes: number;
}

/** What the model says an adapter must match; each given field is checked. */
export interface AdapterExpectations {
  model?: string;
  factors?: string;
  rank?: number;
  modules?: number;
  /** Hidden size of an encoder: a head, when present, must be [C, hidden]. */
  hidden?: number;
}
