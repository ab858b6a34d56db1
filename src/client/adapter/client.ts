import {
  type Adapter,
  type AdapterExpectations,
  AdapterFormatError,
  decodeAdapter,
  encodeAdapter,
} from "../../format/index.ts";
import { EdgeApi } from "../api/client.ts";
import type { StoredAdapter } from "../api/routes.ts";
import type { BlobCache } from "../cache/types.ts";
import {
  AdapterRefusedError,
  ApiError,
  ClientError,
  NotFoundError,
  OfflineError,
} from "../errors.ts";

export interface AdapterClientOptions {
  /** API origin, e.g. `http://127.0.0.1:8787`. */
  api: string;
  /** Manifest id of the model. */
  model: string;
  /** What every adapter must match (model, factors digest, rank, modules, hidden). */
  expect: AdapterExpectations;
  /** Bearer token, or a function returning a fresh one per request. */
  token: string | (() => string | Promise<string>);
  /** Where the last good copy of each user's adapter is kept (offline use, ETag revalidation). */
  cache: BlobCache;
  fetch?: typeof fetch;
}

export interface FetchedAdapter {
  adapter: Adapter;
  /** The API's ETag (quoted sha256 of the bytes). */
  etag: string | undefined;
  version: string | undefined;
  /** network: new bytes; revalidated: 304, cached copy reused (not decoded again); offline: API unreachable. */
  source: "network" | "revalidated" | "offline";
}

/** The API's answer to an upload: version number, ETag and size of the stored adapter. */
export type UploadResult = StoredAdapter;

/** A user id as one URL path segment; the API's ids are short and URL-safe. */
const USER_PATTERN = /^[A-Za-z0-9._@:-]{1,128}$/;

function checkUser(user: string): string {
  if (!USER_PATTERN.test(user)) {
    throw new ClientError(
      "bad_user",
      `user id ${JSON.stringify(user)} does not match ${USER_PATTERN}`,
    );
  }
  return user;
}

/** Fetch (with revalidation and offline fallback) and upload users' adapters through the edge API. */
export class AdapterClient {
  private readonly options: AdapterClientOptions;
  /** The edge API (retries, ApiError with the API's code and request id). */
  readonly edge: EdgeApi;
  /** Decoded copies of revalidated adapters: a 304 costs no decode. */
  private readonly decoded = new Map<string, { etag: string; adapter: Adapter }>();

  constructor(options: AdapterClientOptions) {
    this.options = options;
    this.edge = new EdgeApi({ api: options.api, token: options.token, fetch: options.fetch });
  }

  url(user: string): string {
    const params = { model: this.options.model, user: checkUser(user) };
    return this.edge.url("/v1/models/:model/users/:user/adapter", params);
  }

  private cacheKey(user: string): string {
    const safe = (s: string) =>
      s.replace(/[^A-Za-z0-9._-]/g, (c) => `_${c.charCodeAt(0).toString(16)}`);
    return `adapters/${safe(this.options.model)}/${safe(user)}`;
  }

  private decode(bytes: Uint8Array, user: string): Adapter {
    try {
      return decodeAdapter(bytes, this.options.expect);
    } catch (error) {
      if (error instanceof AdapterFormatError) {
        throw new AdapterRefusedError(error.code, error.message, user, { cause: error });
      }
      throw error;
    }
  }

  /**
   * The user's current adapter. Revalidates the cached copy with `If-None-Match` (a 304 reuses it
   * without decoding); if the API is unreachable, returns the last good copy (`source: "offline"`).
   * A damaged adapter or one for other factors throws AdapterRefusedError and is not cached.
   */
  async fetchAdapter(user: string, init: { signal?: AbortSignal } = {}): Promise<FetchedAdapter> {
    const url = this.url(user);
    const key = this.cacheKey(user);
    const cached = await this.options.cache.get(key);
    let response: Response;
    try {
      response = await this.edge.getAdapter(this.options.model, user, {
        ifNoneMatch: cached?.meta.etag,
        signal: init.signal,
      });
    } catch (error) {
      if (error instanceof NotFoundError) {
        // Deleted (or never stored): the last good copy must not outlive it.
        await this.options.cache.delete(key);
        this.decoded.delete(key);
      }
      if (!(error instanceof OfflineError) || cached === undefined) throw error;
      return {
        adapter: this.fromCache(key, cached.bytes, cached.meta.etag, user),
        etag: cached.meta.etag,
        version: cached.meta.version,
        source: "offline",
      };
    }
    if (response.status === 304 && cached !== undefined) {
      return {
        adapter: this.fromCache(key, cached.bytes, cached.meta.etag, user),
        etag: cached.meta.etag,
        version: cached.meta.version,
        source: "revalidated",
      };
    }
    if (response.status === 304) {
      throw new ApiError(304, "not_modified", "304 without a cached copy to reuse", url);
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    const adapter = this.decode(bytes, user);
    const etag = response.headers.get("etag") ?? undefined;
    const version = response.headers.get("x-adapter-version") ?? undefined;
    const meta: Record<string, string> = {};
    if (etag !== undefined) meta.etag = etag;
    if (version !== undefined) meta.version = version;
    // The copy serves revalidation and offline use only: a failing cache must not fail the fetch.
    await this.options.cache.put(key, bytes, meta).catch(() => undefined);
    if (etag !== undefined) this.decoded.set(key, { etag, adapter });
    return { adapter, etag, version, source: "network" };
  }

  private fromCache(
    key: string,
    bytes: Uint8Array,
    etag: string | undefined,
    user: string,
  ): Adapter {
    const hit = this.decoded.get(key);
    if (hit !== undefined && hit.etag === etag) return hit.adapter;
    const adapter = this.decode(bytes, user);
    if (etag !== undefined) this.decoded.set(key, { etag, adapter });
    return adapter;
  }

  /**
   * Store a new adapter version. `R` alone is encoded with the model's expectations (F16 unless
   * `dtype` says otherwise); bytes are sent as they are. `ifMatch` (an ETag) makes it conditional:
   * a newer version on the server fails with ConflictError (412).
   */
  async uploadAdapter(
    user: string,
    data: Float32Array | Uint8Array,
    options: {
      ifMatch?: string;
      dtype?: "F16" | "F32" | "BF16";
      metadata?: Record<string, string>;
    } = {},
  ): Promise<UploadResult> {
    const url = this.url(user);
    let body: Uint8Array;
    if (data instanceof Float32Array) {
      const { model, factors, rank, modules } = this.options.expect;
      if (
        model === undefined ||
        factors === undefined ||
        rank === undefined ||
        modules === undefined
      ) {
        throw new ClientError(
          "missing_expectations",
          "encoding R needs model, factors, rank and modules in `expect`",
        );
      }
      body = encodeAdapter(
        {
          model,
          factors,
          rank,
          modules,
          R: data,
          metadata: { source: "client", ...options.metadata },
        },
        { dtype: options.dtype },
      );
    } else {
      body = data;
    }
    const result = await this.edge.putAdapter(this.options.model, checkUser(user), body, {
      ifMatch: options.ifMatch,
    });
    if (typeof result.etag !== "string") {
      throw new ApiError(
        201,
        "bad_response",
        `upload answer lacks an etag: ${JSON.stringify(result)}`,
        url,
      );
    }
    return result;
  }
}
