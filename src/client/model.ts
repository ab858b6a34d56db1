import {
  type Adapter,
  type AdapterExpectations,
  AdapterFormatError,
  type AdapterHead,
  checkExpectations,
} from "../format/index.ts";
import { expectationsFor } from "../manifest/index.ts";
import { AdapterClient, type FetchedAdapter } from "./adapter/index.ts";
import {
  type Backend,
  type BackendOptions,
  createSession,
  type InferenceSession,
  selectBackend,
} from "./backend/index.ts";
import { type BlobCache, defaultCache } from "./cache/index.ts";
import { AdapterRefusedError, ClientError, NotFoundError } from "./errors.ts";
import type { ChatMessage } from "./generate/chat-template.ts";
import { type DecodeOptions, DecoderRunner } from "./generate/decoder.ts";
import { applyHead, EncoderRunner, padRows } from "./generate/encoder.ts";
import { TextStream } from "./generate/stream-text.ts";
import { loadTokenizer, type TextTokenizer } from "./generate/tokenizer.ts";
import { chooseGraph, type GraphChoice, graphFileFilter } from "./graph-choice.ts";
import { type LoadTimings, loadModelFiles, modelSource, type Progress } from "./loader/index.ts";
import { type ClientManifest, eosTokenIds } from "./manifest.ts";
import { RSlot } from "./r-slot.ts";

export interface LoadModelOptions extends BackendOptions {
  /** Default: ~/.cache/loraxs (Node), Cache Storage (browser). */
  cache?: BlobCache;
  onProgress?: (p: Progress) => void;
  fetch?: typeof fetch;
  signal?: AbortSignal;
  /** Re-hash cached files at start (default: trust the digest recorded at download). */
  reverifyCache?: boolean;
  /** Also fetch and cache the training-step graph (role `onnx-train`) for OnDeviceTrainer. */
  train?: boolean;
  /**
   * A graph variant by name (the manifest's `graphs`, e.g. "fp32"); default: the first one
   * listed for the backend's device. `model.graph` says which ran and why.
   */
  graph?: string;
}

export interface ModelTimings extends LoadTimings {
  backendMs: number;
  sessionMs: number;
  tokenizerMs: number;
  totalMs: number;
}

export interface GenerateOptions extends Omit<DecodeOptions, "stopIds"> {
  /** Text that ends generation (not included in the output). */
  stop?: readonly string[];
}

export interface GenerateChunk {
  token: number;
  /** New text (may be empty while a character or a possible stop string is incomplete). */
  text: string;
}

export type Prompt = string | ChatMessage[] | { ids: readonly number[] };

const now = () => performance.now();

/** A loaded model whose R can be swapped per user without rebuilding the session. */
export class PersonalModel {
  readonly manifest: ClientManifest;
  readonly backend: Backend;
  readonly timings: ModelTimings;
  readonly tokenizer: TextTokenizer | undefined;
  readonly cache: BlobCache;
  /** The graph variant this model runs, and why it was picked. */
  readonly graph: GraphChoice;
  private readonly session: InferenceSession;
  private readonly r: RSlot;
  private readonly decoder: DecoderRunner | undefined;
  private readonly encoder: EncoderRunner | undefined;
  private head: AdapterHead | undefined;

  constructor(parts: {
    manifest: ClientManifest;
    backend: Backend;
    session: InferenceSession;
    tokenizer: TextTokenizer | undefined;
    timings: ModelTimings;
    cache: BlobCache;
    graph: GraphChoice;
  }) {
    this.graph = parts.graph;
    this.manifest = parts.manifest;
    this.backend = parts.backend;
    this.session = parts.session;
    this.tokenizer = parts.tokenizer;
    this.timings = parts.timings;
    this.cache = parts.cache;
    const shape = parts.manifest.io.R.shape as [number, number, number];
    this.r = new RSlot(parts.backend, shape);
    if (parts.manifest.family === "decoder") {
      this.decoder = new DecoderRunner(
        parts.backend,
        parts.session,
        parts.manifest,
        this.r,
        parts.graph.prefillChunk,
      );
    } else {
      this.encoder = new EncoderRunner(
        parts.backend,
        parts.session,
        parts.manifest.io.R.name,
        parts.manifest.config.hidden_size,
        this.r,
      );
    }
  }

  /** What an adapter for this model must match. */
  get expectations(): AdapterExpectations {
    return expectationsFor(this.manifest);
  }

  /** Label of the current R ("zeros" for the base model). */
  get adapterLabel(): string {
    return this.r.label;
  }

  /** Where the current R tensor lives: `gpu-buffer` (WebGPU, uploaded once) or `cpu`. */
  get rLocation(): string {
    return this.r.location;
  }

  /** Rows of the fixed KV cache the last decode ran over (WebGPU, docs/client.md); null when its
   * cache grew with each step, or before any decode. */
  get kvCacheRows(): number | null {
    return this.decoder?.lastCacheRows ?? null;
  }

  /** Swap R (and the head of an encoder); `null` runs the base model. Never rebuilds the session. */
  setAdapter(adapter: Adapter | null, label?: string): void {
    if (adapter === null) {
      this.r.set(null, label ?? "zeros");
      this.head = undefined;
      return;
    }
    try {
      checkExpectations(adapter, this.expectations);
    } catch (error) {
      if (!(error instanceof AdapterFormatError)) throw error;
      throw new AdapterRefusedError(error.code, error.message, undefined, { cause: error });
    }
    this.r.set(adapter.R, label ?? "adapter");
    this.head = adapter.head;
  }

  /** An API client for this model's adapters (expectations filled in from the manifest). */
  adapterClient(options: {
    api: string;
    token: string | (() => string | Promise<string>);
    fetch?: typeof fetch;
  }): AdapterClient {
    return new AdapterClient({
      ...options,
      model: this.manifest.id,
      expect: this.expectations,
      cache: this.cache,
    });
  }

  /**
   * Switch to a user: fetch their adapter and swap R. A user without an adapter (404) gets the
   * base model (returns null). On any failure (refused adapter, auth, offline without a copy)
   * R is reset to zeros before the error is thrown: the previous user's R never serves this one.
   */
  async useUser(
    client: AdapterClient,
    user: string,
    init: { signal?: AbortSignal } = {},
  ): Promise<FetchedAdapter | null> {
    try {
      const fetched = await client.fetchAdapter(user, init);
      this.setAdapter(fetched.adapter, user);
      return fetched;
    } catch (error) {
      if (error instanceof NotFoundError) {
        this.setAdapter(null);
        return null;
      }
      this.setAdapter(null);
      throw error;
    }
  }

  /** The part this call needs, or a ClientError naming what the model lacks. */
  private need<T>(part: T | undefined, code: string, lack: string): T {
    if (part === undefined) throw new ClientError(code, `model ${this.manifest.id} ${lack}`);
    return part;
  }

  private needDecoder(): DecoderRunner {
    const family = this.manifest.family;
    return this.need(this.decoder, "wrong_family", `is an ${family}; this needs a decoder`);
  }

  private needEncoder(): EncoderRunner {
    const family = this.manifest.family;
    return this.need(this.encoder, "wrong_family", `is a ${family}; this needs an encoder`);
  }

  private needTokenizer(): TextTokenizer {
    return this.need(this.tokenizer, "no_tokenizer", "lists no tokenizer files; pass token ids");
  }

  /** Token ids of a prompt: chat messages go through the chat template. */
  encodePrompt(prompt: Prompt): number[] {
    if (typeof prompt === "object" && "ids" in prompt) return [...prompt.ids];
    const tokenizer = this.needTokenizer();
    const text = typeof prompt === "string" ? prompt : tokenizer.applyChatTemplate(prompt, true);
    return tokenizer.encode(text, { addSpecialTokens: typeof prompt === "string" });
  }

  /** Last-position logits of each row (decoder), for checks against reference logits. */
  forward(
    ids: readonly (readonly number[])[],
    mask?: readonly (readonly number[])[],
    positionIds?: readonly (readonly number[])[],
  ): Promise<Float32Array[]> {
    return this.needDecoder().forward(ids, mask, positionIds);
  }

  /** Raw token ids, streamed (greedy unless sampling options say otherwise). */
  tokens(prompt: Prompt, options: DecodeOptions = {}): AsyncGenerator<number> {
    const stopIds = options.stopIds ?? this.tokenizer?.stopIds;
    return this.needDecoder().decode(this.encodePrompt(prompt), { ...options, stopIds });
  }

  /** Stream the answer: one chunk per token, text deltas ending before any stop string. */
  async *generate(prompt: Prompt, options: GenerateOptions = {}): AsyncGenerator<GenerateChunk> {
    const tokenizer = this.needTokenizer();
    const stream = new TextStream(options.stop);
    const ids: number[] = [];
    for await (const token of this.tokens(prompt, { ...options, stopIds: tokenizer.stopIds })) {
      ids.push(token);
      const text = stream.push(tokenizer.decode(ids));
      yield { token, text };
      if (stream.done) return;
    }
    const rest = stream.push(tokenizer.decode(ids), true);
    if (rest.length > 0) yield { token: -1, text: rest };
  }

  /** The whole answer as one string. */
  async complete(
    prompt: Prompt,
    options: GenerateOptions = {},
  ): Promise<{ text: string; tokens: number[] }> {
    let text = "";
    const tokens: number[] = [];
    for await (const chunk of this.generate(prompt, options)) {
      text += chunk.text;
      if (chunk.token >= 0) tokens.push(chunk.token);
    }
    return { text, tokens };
  }

  /** Sentence embeddings (encoder): L2-normalised, mean-pooled by the graph. */
  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    const encoder = this.needEncoder();
    const tokenizer = this.needTokenizer();
    const { ids, mask } = padRows(
      texts.map((t) => tokenizer.encode(t)),
      tokenizer.padId,
    );
    return encoder.embedIds(ids, mask);
  }

  /** Labels and probabilities from the current adapter's head (encoder). */
  async classify(
    texts: readonly string[],
  ): Promise<{ label: string; probabilities: Record<string, number> }[]> {
    const head = this.head;
    if (head === undefined) {
      throw new ClientError(
        "no_head",
        `the current adapter (${this.r.label}) has no classification head`,
      );
    }
    const embeddings = await this.embed(texts);
    const labels = head.labels ?? Array.from({ length: head.classes }, (_, i) => String(i));
    return embeddings.map((e) => {
      const { probabilities } = applyHead(e, head);
      let best = 0;
      for (let c = 1; c < head.classes; c++)
        if ((probabilities[c] as number) > (probabilities[best] as number)) best = c;
      return {
        label: labels[best] as string,
        probabilities: Object.fromEntries(labels.map((l, c) => [l, probabilities[c] as number])),
      };
    });
  }

  async dispose(): Promise<void> {
    this.r.dispose();
    await this.session.release();
  }
}

/**
 * Load a model: pick the backend, download (or read from the cache) and verify every file of
 * the manifest, create the session once, and start with R = zeros (the base model).
 */
export async function loadModel(
  location: string,
  options: LoadModelOptions = {},
): Promise<PersonalModel> {
  const start = now();
  let t = now();
  const backend = await selectBackend(options);
  const backendMs = now() - t;
  const cache = options.cache ?? (await defaultCache());
  const source = modelSource(location, options.fetch);
  const byPath = backend.runtime === "onnxruntime-node" && cache.localPath !== undefined;
  let choice: GraphChoice | undefined;
  const loaded = await loadModelFiles(source, {
    cache,
    onProgress: options.onProgress,
    signal: options.signal,
    reverifyCache: options.reverifyCache,
    train: options.train,
    includeFor: (m) => {
      choice = chooseGraph(m, backend.device, options.graph);
      return graphFileFilter(m, choice, options.train);
    },
    pathOnly: (f) =>
      byPath && (f.role === "onnx" || f.role === "onnx-data" || f.role === "onnx-train"),
  });
  const { manifest, files } = loaded;
  const graph = choice as GraphChoice | undefined;
  if (graph === undefined) throw new Error("unreachable: the loader reads the manifest first");
  const onnx = files.get(graph.file);
  if (onnx === undefined) {
    throw new ClientError("manifest_incomplete", `manifest files lack the graph ${graph.file}`);
  }
  const externalData: { path: string; data: Uint8Array }[] = [];
  for (const name of graph.dataFiles) {
    const data = files.get(name);
    if (data === undefined) {
      throw new ClientError("manifest_incomplete", `manifest files lack the external data ${name}`);
    }
    if (data.bytes !== undefined) externalData.push({ path: name, data: data.bytes });
  }
  t = now();
  const { session, backend: ready } = await createSession(
    backend,
    {
      path: onnx.path,
      bytes: onnx.bytes,
      externalData: externalData.length > 0 ? externalData : undefined,
    },
    {
      outputsOnGpu:
        manifest.family === "decoder"
          ? Array.from({ length: manifest.config.num_layers }, (_, i) => [
              `present.${i}.key`,
              `present.${i}.value`,
            ]).flat()
          : [],
    },
  );
  const sessionMs = now() - t;
  t = now();
  const tokenizerFile = manifest.files.find((f) => f.role === "tokenizer");
  const configFile = manifest.files.find((f) => f.role === "tokenizer-config");
  let tokenizer: TextTokenizer | undefined;
  if (tokenizerFile !== undefined && configFile !== undefined) {
    const json = (name: string) =>
      JSON.parse(new TextDecoder().decode(files.get(name)?.bytes)) as Record<string, unknown>;
    tokenizer = loadTokenizer(
      json(tokenizerFile.name),
      json(configFile.name),
      eosTokenIds(manifest),
    );
  }
  const tokenizerMs = now() - t;
  return new PersonalModel({
    manifest,
    backend: ready,
    session,
    tokenizer,
    cache,
    graph,
    timings: { ...loaded.timings, backendMs, sessionMs, tokenizerMs, totalMs: now() - start },
  });
}
