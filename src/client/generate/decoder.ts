import {
  type Backend,
  cpuTensor,
  gpuInOutTensors,
  type InferenceSession,
  type Tensor,
} from "../backend/index.ts";
import { AbortedError, ClientError } from "../errors.ts";
import type { ClientManifest } from "../manifest.ts";
import type { RLease, RSlot } from "../r-slot.ts";
import { checkFeeds, int64Rows } from "./feeds.ts";
import { createSampler, type SamplingOptions } from "./sampling.ts";

export interface DecodeOptions extends SamplingOptions {
  /** Most new tokens (default 128). */
  maxTokens?: number;
  /** Token ids that end generation (not emitted). */
  stopIds?: ReadonlySet<number>;
  signal?: AbortSignal;
}

/** Default for `maxTokens`: a short answer; apps raise it explicitly. */
export const DEFAULT_MAX_TOKENS = 128;

/** Smallest fixed KV cache (rows) a WebGPU decode allocates; larger ones are powers of two. */
const MIN_CACHE_ROWS = 256;
/** Positions the builder's rotary tables cover at most (client_graph.GRAPH_POSITIONS_MAX). */
const GRAPH_POSITIONS_MAX = 8192;

/** A KV cache of fixed rows: past_key_values.* fed and present.* fetched into the same buffers. */
interface FixedCache {
  rows: number;
  past: Record<string, Tensor>;
  fetches: Record<string, Tensor | null>;
  destroy(): void;
}

interface KvShape {
  layers: number;
  kvHeads: number;
  headDim: number;
}

function kvShape(manifest: ClientManifest): KvShape {
  if (manifest.family !== "decoder") {
    throw new ClientError("not_a_decoder", `model ${manifest.id} is an ${manifest.family}`);
  }
  const c = manifest.config;
  const heads = c.num_attention_heads ?? 1;
  return {
    layers: c.num_layers,
    kvHeads: c.num_kv_heads ?? heads,
    headDim: c.head_dim ?? c.hidden_size / heads,
  };
}

/** The decoder graph: prefill and KV-cache decoding with the current R. */
export class DecoderRunner {
  readonly kv: KvShape;
  readonly vocab: number;
  private readonly backend: Backend;
  private readonly session: InferenceSession;
  private readonly r: RSlot;
  private readonly rName: string;
  private readonly hasPositionIds: boolean;
  /** Most tokens one run may take (the graph's `prefill_chunk`); prompts run in chunks of it. */
  private readonly chunk: number;
  private readonly maxPositions: number;
  /** Rows of the fixed KV cache the last decode used; null when it grew (or none ran). */
  lastCacheRows: number | null = null;

  constructor(
    backend: Backend,
    session: InferenceSession,
    manifest: ClientManifest,
    r: RSlot,
    prefillChunk?: number,
  ) {
    this.backend = backend;
    this.chunk = prefillChunk ?? Number.POSITIVE_INFINITY;
    this.maxPositions = manifest.config.max_position_embeddings ?? GRAPH_POSITIONS_MAX;
    this.session = session;
    this.r = r;
    this.rName = manifest.io.R.name;
    this.kv = kvShape(manifest);
    this.vocab = manifest.config.vocab_size;
    this.hasPositionIds = session.inputNames.includes("position_ids");
  }

  private emptyPast(batch: number): Record<string, Tensor> {
    const feeds: Record<string, Tensor> = {};
    const dims = [batch, this.kv.kvHeads, 0, this.kv.headDim];
    for (let i = 0; i < this.kv.layers; i++) {
      feeds[`past_key_values.${i}.key`] = cpuTensor(
        this.backend,
        "float32",
        new Float32Array(0),
        dims,
      );
      feeds[`past_key_values.${i}.value`] = cpuTensor(
        this.backend,
        "float32",
        new Float32Array(0),
        dims,
      );
    }
    return feeds;
  }

  private async run(
    ids: readonly (readonly number[])[],
    mask: readonly (readonly number[])[],
    positions: readonly (readonly number[])[],
    past: Record<string, Tensor>,
    lease: RLease,
    fetches?: Record<string, Tensor | null>,
  ): Promise<Record<string, Tensor>> {
    const batch = ids.length;
    const feeds: Record<string, Tensor> = {
      input_ids: cpuTensor(this.backend, "int64", int64Rows(ids), [batch, ids[0]?.length ?? 0]),
      attention_mask: cpuTensor(this.backend, "int64", int64Rows(mask), [
        batch,
        mask[0]?.length ?? 0,
      ]),
      [this.rName]: lease.tensor,
      ...past,
    };
    if (this.hasPositionIds) {
      feeds.position_ids = cpuTensor(this.backend, "int64", int64Rows(positions), [
        batch,
        positions[0]?.length ?? 0,
      ]);
    }
    checkFeeds(this.session, feeds);
    const out = fetches ? this.session.run(feeds, fetches as never) : this.session.run(feeds);
    return (await out) as Record<string, Tensor>;
  }

  /**
   * On WebGPU, a GroupQueryAttention graph (one with a prefill chunk) decodes over a fixed KV cache
   * of `rows` ≥ `total` positions: its past and present share one buffer per layer and the mask is
   * as wide as the cache, so every step has the same shapes and no cache is copied: exact, and
   * 1.07-1.10x the growing cache on an H100 (BENCHMARKS.md, "Where a WebGPU decode step goes").
   * Null elsewhere, or when `total` passes the positions the graph covers.
   */
  private fixedCache(total: number): FixedCache | null {
    if (this.backend.device !== "webgpu" || !Number.isFinite(this.chunk)) return null;
    const cap = Math.min(this.maxPositions, GRAPH_POSITIONS_MAX);
    const rows = Math.max(MIN_CACHE_ROWS, 2 ** Math.ceil(Math.log2(total)));
    if (rows > cap) return null;
    const past: Record<string, Tensor> = {};
    const fetches: Record<string, Tensor | null> = { logits: null };
    const buffers: { destroy(): void }[] = [];
    const dims = [1, this.kv.kvHeads, rows, this.kv.headDim];
    for (let i = 0; i < this.kv.layers; i++) {
      for (const kind of ["key", "value"] as const) {
        const t = gpuInOutTensors(this.backend, dims);
        if (t === null) {
          for (const b of buffers) b.destroy();
          return null;
        }
        buffers.push(t);
        past[`past_key_values.${i}.${kind}`] = t.input;
        fetches[`present.${i}.${kind}`] = t.output;
      }
    }
    const destroy = () => {
      for (const b of buffers) b.destroy();
    };
    return { rows, past, fetches, destroy };
  }

  /** Last position's logits of each row (no cache); positions count the mask's ones, like prepare.
   * Rows longer than the graph's prefill chunk run in chunks over the KV cache; that needs rows
   * without padding (a padded row's length would change between chunks). */
  async forward(
    ids: readonly (readonly number[])[],
    mask?: readonly (readonly number[])[],
    positionIds?: readonly (readonly number[])[],
  ): Promise<Float32Array[]> {
    const m = mask ?? ids.map((row) => row.map(() => 1));
    const positions = positionIds ?? ids.map((row) => row.map((_, i) => i));
    const t = ids[0]?.length ?? 0;
    if (t > this.chunk && m.some((row) => row.some((x) => x !== 1))) {
      throw new ClientError(
        "padded_rows_too_long",
        `this graph takes at most ${this.chunk} tokens a run, and rows with padding cannot run in chunks; pass rows of ${this.chunk} tokens or fewer, or rows without padding`,
      );
    }
    const lease = this.r.acquire();
    let past = this.emptyPast(ids.length);
    let pastGpu: Tensor[] = [];
    try {
      let out: Record<string, Tensor> = {};
      let width = 0;
      for (let start = 0; start < t; start += this.chunk) {
        const end = Math.min(t, start + this.chunk);
        out = await this.run(
          ids.map((row) => row.slice(start, end)),
          m.map((row) => row.slice(0, end)),
          positions.map((row) => row.slice(start, end)),
          past,
          lease,
        );
        for (const x of pastGpu) x.dispose();
        [past, pastGpu] = this.presents(out);
        width = end - start;
        if (end < t && out.logits?.location === "gpu-buffer") out.logits.dispose();
      }
      const logits = await readLogits(out.logits);
      const rows = ids.map((_, b) =>
        logits.slice((b * width + width - 1) * this.vocab, (b * width + width) * this.vocab),
      );
      if (out.logits?.location === "gpu-buffer") out.logits.dispose();
      return rows;
    } finally {
      for (const x of pastGpu) x.dispose();
      lease.release();
    }
  }

  /** A run's present.* as the next run's past_key_values.*, and those that live on the GPU. */
  private presents(out: Record<string, Tensor>): [Record<string, Tensor>, Tensor[]] {
    const past: Record<string, Tensor> = {};
    const gpu: Tensor[] = [];
    for (let i = 0; i < this.kv.layers; i++) {
      for (const kind of ["key", "value"] as const) {
        const present = out[`present.${i}.${kind}`];
        if (present === undefined)
          throw new ClientError("bad_outputs", `graph did not return present.${i}.${kind}`);
        past[`past_key_values.${i}.${kind}`] = present;
        if (present.location === "gpu-buffer") gpu.push(present);
      }
    }
    return [past, gpu];
  }

  /**
   * Stream new token ids for one prompt: prefill, then one token at a time with the KV cache
   * (present → past). R is the one current when generation starts, even if it is swapped meanwhile.
   */
  async *decode(promptIds: readonly number[], options: DecodeOptions = {}): AsyncGenerator<number> {
    if (promptIds.length === 0) throw new ClientError("empty_prompt", "the prompt has no tokens");
    const maxTokens = options.maxTokens ?? DEFAULT_MAX_TOKENS;
    if (!(Number.isInteger(maxTokens) && maxTokens >= 0)) {
      throw new ClientError("bad_max_tokens", `maxTokens ${maxTokens} must be an integer ≥ 0`);
    }
    const sample = createSampler(options);
    const lease = this.r.acquire();
    const cache = this.fixedCache(promptIds.length + maxTokens);
    this.lastCacheRows = cache?.rows ?? null;
    let past = cache?.past ?? this.emptyPast(1);
    let pastGpu: Tensor[] = [];
    try {
      const pending = [...promptIds];
      let input: number[] = [];
      let length = 0;
      for (let step = 0; step < maxTokens; ) {
        if (options.signal?.aborted) throw new AbortedError(options.signal.reason);
        // The prompt in chunks the graph allows (its last chunk yields the first token), then one
        // token a run.
        if (pending.length > 0) input = pending.splice(0, this.chunk);
        const attended = length + input.length;
        const mask = [
          cache === null
            ? new Array<number>(attended).fill(1)
            : Array.from({ length: cache.rows }, (_, j) => (j < attended ? 1 : 0)),
        ];
        const positions = [input.map((_, i) => length + i)];
        const out = await this.run([input], mask, positions, past, lease, cache?.fetches);
        length = attended;
        if (cache === null) {
          for (const t of pastGpu) t.dispose();
          [past, pastGpu] = this.presents(out);
        }
        if (pending.length > 0) {
          if (out.logits?.location === "gpu-buffer") out.logits.dispose();
          continue;
        }
        const logits = await readLogits(out.logits);
        const last = logits.subarray((input.length - 1) * this.vocab, input.length * this.vocab);
        const next = sample(last);
        step++;
        if (options.stopIds?.has(next)) return;
        yield next;
        input = [next];
      }
    } finally {
      for (const t of pastGpu) t.dispose();
      cache?.destroy();
      lease.release();
    }
  }
}

async function readLogits(t: Tensor | undefined): Promise<Float32Array> {
  if (t === undefined) throw new ClientError("bad_outputs", "graph did not return logits");
  const data = t.location === "cpu" ? t.data : await t.getData(true);
  return data as Float32Array;
}
