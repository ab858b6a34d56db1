// A bare onnxruntime decode loop (no client code): the floor the client's runner is held to, and
// the way to run graphs the client does not load (plain.onnx has no R input).
import type { InferenceSession, Ort, Tensor } from "../../src/client/backend/index.ts";

export interface Kv {
  layers: number;
  kvHeads: number;
  headDim: number;
}

export interface DecodeTiming {
  /** Prompt in, first token's logits read back (ms). */
  prefillMs: number;
  /** New tokens per second after the first. */
  tokensPerSecond: number;
  tokens: number[];
  /** The logits the prompt ends with (the first token's row). */
  firstLogits?: Float32Array;
  /** Per decode step after the first, mean ms: session.run (logits left on the GPU where it
   * can), reading the logits back, and the argmax on the CPU. */
  split?: { runMs: number; readbackMs: number; argmaxMs: number };
}

const argmax = (x: Float32Array): number => {
  let best = 0;
  for (let i = 1; i < x.length; i++) if ((x[i] as number) > (x[best] as number)) best = i;
  return best;
};

const ints = (xs: number[]) => BigInt64Array.from(xs, (x) => BigInt(x));

/** The prompt chunk a GroupQueryAttention graph takes on WebGPU (export_client.WEBGPU_PREFILL_CHUNK,
 * the manifest's `prefill_chunk`); graphs without it prefill in one run. */
export const prefillChunkOf = (graph: Uint8Array): number | undefined =>
  Buffer.from(graph.buffer, graph.byteOffset, graph.byteLength).includes("GroupQueryAttention")
    ? 31
    : undefined;

export interface DecodeOptions {
  /** Called around each run; `step` is the index of the token the run yields (prompt chunks: 0). */
  before?(step: number): void;
  after?(step: number): Promise<void>;
  /** Prefill the prompt in runs of at most this many tokens (WebGPU's GroupQueryAttention is
   * wrong for 32+ tokens in one run, docs/client.md). */
  chunk?: number;
  /** A fixed KV cache of this many rows (GroupQueryAttention graphs on WebGPU): past_key_values.*
   * and present.* bound to the same GPU buffers, the attention mask as wide as the cache, so every
   * decode step has the same shapes. */
  cacheRows?: number;
}

// WebGPU's buffer usage flags STORAGE | COPY_SRC | COPY_DST (the globals exist in Dawn's binding).
const CACHE_USAGE = 0x80 | 0x04 | 0x08;

/** Per layer, key and value: one GPU buffer [1, kvHeads, rows, headDim] fed as past and fetched as present. */
function fixedCache(ort: Ort, kv: Kv, rows: number) {
  const device = ort.env.webgpu.device as unknown as GPUDevice;
  const past: Record<string, Tensor> = {};
  const present: Record<string, Tensor | null> = { logits: null };
  const buffers: GPUBuffer[] = [];
  const dims = [1, kv.kvHeads, rows, kv.headDim];
  for (let i = 0; i < kv.layers; i++)
    for (const k of ["key", "value"]) {
      const b = device.createBuffer({
        size: kv.kvHeads * rows * kv.headDim * 4,
        usage: CACHE_USAGE,
      });
      buffers.push(b);
      past[`past_key_values.${i}.${k}`] = ort.Tensor.fromGpuBuffer(b as never, {
        dataType: "float32",
        dims,
      }) as Tensor;
      present[`present.${i}.${k}`] = ort.Tensor.fromGpuBuffer(b as never, {
        dataType: "float32",
        dims,
      }) as Tensor;
    }
  return {
    past,
    present,
    destroy: () => {
      for (const b of buffers) b.destroy();
    },
  };
}

/** Greedy decode of `newTokens` after `prompt`, the KV cache on the GPU between steps. */
export async function rawDecode(
  ort: Ort,
  session: InferenceSession,
  kv: Kv,
  prompt: readonly number[],
  newTokens: number,
  extra: Record<string, Tensor>,
  options: DecodeOptions = {},
): Promise<DecodeTiming> {
  let past: Record<string, Tensor> = {};
  for (let i = 0; i < kv.layers; i++)
    for (const k of ["key", "value"])
      past[`past_key_values.${i}.${k}`] = new ort.Tensor("float32", new Float32Array(0), [
        1,
        kv.kvHeads,
        0,
        kv.headDim,
      ]);
  const cache = options.cacheRows !== undefined ? fixedCache(ort, kv, options.cacheRows) : null;
  if (cache !== null) past = cache.past;
  const pending = [...prompt];
  let last = 0;
  let length = 0;
  const tokens: number[] = [];
  const t0 = performance.now();
  let tFirst = t0;
  let owned: Tensor[] = [];
  const inputs = new Set(session.inputNames);
  const sums = { runMs: 0, readbackMs: 0, argmaxMs: 0 };
  let firstLogits: Float32Array | undefined;
  while (tokens.length < newTokens) {
    const step = tokens.length;
    const input = pending.length > 0 ? pending.splice(0, options.chunk ?? pending.length) : [last];
    const feeds: Record<string, Tensor> = {
      input_ids: new ort.Tensor("int64", ints(input), [1, input.length]),
      attention_mask:
        cache === null
          ? new ort.Tensor("int64", ints(Array(length + input.length).fill(1)), [
              1,
              length + input.length,
            ])
          : new ort.Tensor(
              "int64",
              ints(
                Array.from({ length: options.cacheRows ?? 0 }, (_, j) =>
                  j < length + input.length ? 1 : 0,
                ),
              ),
              [1, options.cacheRows ?? 0],
            ),
      position_ids: new ort.Tensor("int64", ints(input.map((_, i) => length + i)), [
        1,
        input.length,
      ]),
      ...extra,
      ...past,
    };
    // Builder graphs take no position_ids (positions come from the mask); feed what the graph reads.
    for (const name of Object.keys(feeds)) if (!inputs.has(name)) delete feeds[name];
    options.before?.(step);
    const t1 = performance.now();
    const out = (
      cache === null ? await session.run(feeds) : await session.run(feeds, cache.present as never)
    ) as Record<string, Tensor>;
    const t2 = performance.now();
    length += input.length;
    if (cache === null) {
      for (const t of owned) t.dispose();
      past = {};
      owned = [];
      for (let i = 0; i < kv.layers; i++)
        for (const k of ["key", "value"]) {
          const t = out[`present.${i}.${k}`] as Tensor;
          past[`past_key_values.${i}.${k}`] = t;
          if (t.location === "gpu-buffer") owned.push(t);
        }
    }
    const logits = out.logits as Tensor;
    if (pending.length > 0) {
      // A prompt chunk before the last one: its logits are not needed.
      if (logits.location === "gpu-buffer") logits.dispose();
      await options.after?.(step);
      continue;
    }
    const data = (
      logits.location === "cpu" ? logits.data : await logits.getData(true)
    ) as Float32Array;
    const t3 = performance.now();
    if (cache !== null && logits.location === "gpu-buffer") logits.dispose();
    const vocab = logits.dims[2] as number;
    const row = data.subarray((input.length - 1) * vocab, input.length * vocab);
    if (step === 0) firstLogits = row.slice();
    last = argmax(row);
    if (step > 0) {
      sums.runMs += t2 - t1;
      sums.readbackMs += t3 - t2;
      sums.argmaxMs += performance.now() - t3;
    }
    await options.after?.(step);
    if (step === 0) tFirst = performance.now();
    tokens.push(last);
  }
  const end = performance.now();
  for (const t of owned) t.dispose();
  cache?.destroy();
  return {
    prefillMs: tFirst - t0,
    tokensPerSecond: newTokens > 1 ? (newTokens - 1) / ((end - tFirst) / 1000) : Number.NaN,
    tokens,
    firstLogits,
    split: {
      runMs: sums.runMs / Math.max(1, newTokens - 1),
      readbackMs: sums.readbackMs / Math.max(1, newTokens - 1),
      argmaxMs: sums.argmaxMs / Math.max(1, newTokens - 1),
    },
  };
}
