// The one client of the edge API (docs/api.md): every route the on-device client, the CLI, the
// demo page and the scripts call. Failures are ApiError (the API's code, status and request id)
// or OfflineError (no answer); idempotent requests are retried on a network failure or a 502-504.
import { OfflineError } from "../errors.ts";
import { apiError } from "./api-error.ts";
import type { AdapterVersion, Job, ParamsOf, Route, Routes, StoredAdapter } from "./routes.ts";
import { fillRoute } from "./routes.ts";

export interface EdgeApiOptions {
  /** API origin, e.g. `http://127.0.0.1:8787` (or "" for the page's own origin). */
  api: string;
  /** Bearer token, or a function returning a fresh one per request; none for public routes. */
  token?: string | (() => string | Promise<string>) | undefined;
  fetch?: typeof fetch;
  /** Per attempt; none by default. */
  timeoutMs?: number;
  /** Extra attempts of an idempotent request (default 2). */
  retries?: number;
}

type Method = "GET" | "HEAD" | "PUT" | "POST" | "DELETE";

export interface RequestOptions {
  body?: string | Uint8Array;
  headers?: Record<string, string>;
  query?: Record<string, string | number | undefined>;
  /** Statuses answered rather than thrown besides 2xx (e.g. 304, or 404 for "none yet"). */
  accept?: number[];
  signal?: AbortSignal;
  /**
   * Whether the request may be sent again after a network failure or a 502-504: by default GET,
   * HEAD, DELETE and PUTs of models; a PUT of an adapter makes a new version each time, so not.
   */
  idempotent?: boolean;
}

/** Statuses a retry may cure: a gateway's or the platform's, never the API's own verdict. */
const RETRY_STATUSES = new Set([502, 503, 504]);
/** Wait before retry n (n = 1, 2, …): 200 ms, 400 ms, … — the run stays well under a second. */
const RETRY_BASE_MS = 200;
const DEFAULT_RETRIES = 2;

/** The methods with no effect beyond the first call (RFC 9110, 9.2.2). */
const IDEMPOTENT: ReadonlySet<Method> = new Set(["GET", "HEAD", "PUT", "DELETE"]);

export class EdgeApi {
  readonly base: string;
  private readonly options: EdgeApiOptions;
  private readonly fetchImpl: typeof fetch;

  constructor(options: EdgeApiOptions) {
    this.options = options;
    this.base = options.api.replace(/\/+$/, "");
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /** The absolute URL of `route` with its `:params` filled in and `query` appended. */
  url<R extends Route>(route: R, params: ParamsOf<R>, query: RequestOptions["query"] = {}): string {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) search.set(key, String(value));
    }
    const qs = search.toString();
    return `${this.base}${fillRoute(route, params)}${qs ? `?${qs}` : ""}`;
  }

  /**
   * Sends one request (retried when idempotent); returns the response for 2xx and `accept`ed
   * statuses, throws ApiError for other statuses and OfflineError when no answer came.
   */
  async request<R extends Route>(
    method: Method,
    route: R,
    params: ParamsOf<R>,
    options: RequestOptions = {},
  ): Promise<Response> {
    const url = this.url(route, params, options.query);
    const headers: Record<string, string> = { ...options.headers };
    const token = this.options.token;
    if (token !== undefined) {
      const value = typeof token === "string" ? token : await token();
      if (value) headers.authorization = `Bearer ${value}`;
    }
    if (options.body !== undefined && headers["content-type"] === undefined) {
      headers["content-type"] = "application/octet-stream";
    }
    const retries =
      (options.idempotent ?? IDEMPOTENT.has(method))
        ? (this.options.retries ?? DEFAULT_RETRIES)
        : 0;
    for (let attempt = 0; ; attempt += 1) {
      const last = attempt >= retries;
      let response: Response;
      try {
        response = await this.fetchImpl(url, {
          method,
          headers,
          body: options.body as string | Uint8Array<ArrayBuffer> | undefined,
          signal: this.signal(options.signal),
        });
      } catch (error) {
        if (options.signal?.aborted) throw error;
        if (last) throw new OfflineError(url, { cause: error });
        await wait(attempt);
        continue;
      }
      if (response.ok || options.accept?.includes(response.status)) return response;
      if (!last && RETRY_STATUSES.has(response.status)) {
        await response.body?.cancel();
        await wait(attempt);
        continue;
      }
      throw await apiError(response, url);
    }
  }

  private signal(caller: AbortSignal | undefined): AbortSignal | undefined {
    const { timeoutMs } = this.options;
    if (timeoutMs === undefined) return caller;
    const timeout = AbortSignal.timeout(timeoutMs);
    return caller === undefined ? timeout : AbortSignal.any([caller, timeout]);
  }

  /** A JSON answer of `route`. */
  async json<R extends Route, M extends keyof Routes[R]>(
    method: Method,
    route: R,
    params: ParamsOf<R>,
    options: RequestOptions = {},
  ): Promise<Routes[R][M]> {
    const response = await this.request(method, route, params, options);
    return (await response.json()) as Routes[R][M];
  }

  /** The headers of a HEAD request, or null for a 404. */
  private async head<R extends Route>(route: R, params: ParamsOf<R>): Promise<Headers | null> {
    const response = await this.request("HEAD", route, params, { accept: [404] });
    return response.status === 404 ? null : response.headers;
  }

  health(): Promise<{ ok: boolean }> {
    return this.json<"/v1/health", "$get">("GET", "/v1/health", {});
  }

  /** The models the API serves (their manifests' summaries). */
  async listModels(): Promise<Record<string, unknown>[]> {
    return (await this.json<"/v1/models", "$get">("GET", "/v1/models", {})).models;
  }

  /** The manifest the API serves for `model`, or null when it has none. */
  async getManifest(model: string): Promise<unknown> {
    const response = await this.request("GET", "/v1/models/:model", { model }, { accept: [404] });
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    return await response.json();
  }

  /** Publishes a manifest (admin); the text is sent as it is. */
  async putManifest(model: string, manifestText: string): Promise<void> {
    const response = await this.request(
      "PUT",
      "/v1/models/:model/manifest",
      { model },
      { body: manifestText, headers: { "content-type": "application/json" } },
    );
    await response.body?.cancel();
  }

  /** Size and ETag of a model file the API serves, or null when it is missing. */
  async headFile(
    model: string,
    name: string,
  ): Promise<{ bytes: number; etag: string | null } | null> {
    const headers = await this.head("/v1/models/:model/files/:name", { model, name });
    if (headers === null) return null;
    return { bytes: Number(headers.get("content-length")), etag: headers.get("etag") };
  }

  /** Uploads one model file (admin). */
  async putFile(model: string, name: string, bytes: Uint8Array): Promise<void> {
    const response = await this.request(
      "PUT",
      "/v1/models/:model/files/:name",
      { model, name },
      { body: bytes },
    );
    await response.body?.cancel();
  }

  /**
   * The user's current adapter (or one `version`): the raw answer, so callers read the bytes,
   * `ETag` and `X-Adapter-Version`; `ifNoneMatch` may answer 304.
   */
  getAdapter(
    model: string,
    user: string,
    options: { version?: string | number; ifNoneMatch?: string; signal?: AbortSignal } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = {};
    if (options.ifNoneMatch !== undefined) headers["if-none-match"] = options.ifNoneMatch;
    const init = { headers, accept: [304], signal: options.signal };
    if (options.version !== undefined) {
      const params = { model, user, version: options.version };
      return this.request(
        "GET",
        "/v1/models/:model/users/:user/adapter/versions/:version",
        params,
        init,
      );
    }
    return this.request("GET", "/v1/models/:model/users/:user/adapter", { model, user }, init);
  }

  /** The current adapter's ETag (its sha256 hex, unquoted), or null when the user has none. */
  async adapterEtag(model: string, user: string): Promise<string | null> {
    const headers = await this.head("/v1/models/:model/users/:user/adapter", { model, user });
    return headers?.get("etag")?.replace(/^W\//, "").replace(/^"|"$/g, "") ?? null;
  }

  /**
   * Stores the bytes as the user's next adapter version. `ifMatch` (an ETag) makes it
   * conditional: a newer version on the server fails with ConflictError (412). Not retried.
   */
  putAdapter(
    model: string,
    user: string,
    bytes: Uint8Array,
    options: { ifMatch?: string } = {},
  ): Promise<StoredAdapter> {
    const headers: Record<string, string> = {};
    if (options.ifMatch !== undefined) headers["if-match"] = options.ifMatch;
    return this.json<"/v1/models/:model/users/:user/adapter", "$put">(
      "PUT",
      "/v1/models/:model/users/:user/adapter",
      { model, user },
      { body: bytes, headers, idempotent: false },
    );
  }

  /** Deletes the user's adapter: every version. */
  async deleteAdapter(model: string, user: string): Promise<void> {
    const response = await this.request("DELETE", "/v1/models/:model/users/:user/adapter", {
      model,
      user,
    });
    await response.body?.cancel();
  }

  /** The user's adapter versions, newest first. */
  async listVersions(model: string, user: string, limit?: number): Promise<AdapterVersion[]> {
    const route = "/v1/models/:model/users/:user/adapter/versions";
    return (
      await this.json<typeof route, "$get">("GET", route, { model, user }, { query: { limit } })
    ).versions;
  }

  /** Makes an older version current again, as a new version. Not retried. */
  restoreVersion(model: string, user: string, version: string | number): Promise<StoredAdapter> {
    const route = "/v1/models/:model/users/:user/adapter/versions/:version/restore";
    return this.json<typeof route, "$post">("POST", route, { model, user, version });
  }

  /** Queues a training job for the user (docs/contracts.md, "API and jobs"). */
  async createJob(
    model: string,
    user: string,
    data:
      | { kind: "text"; texts: string[] }
      | { kind: "labels"; examples: { text: string; label: string }[] },
    options: Record<string, number> = {},
  ): Promise<Job> {
    const route = "/v1/models/:model/users/:user/jobs";
    const body = JSON.stringify({ data, options });
    const headers = { "content-type": "application/json" };
    return (
      await this.json<typeof route, "$post">("POST", route, { model, user }, { body, headers })
    ).job;
  }

  async getJob(id: string): Promise<Job> {
    return (await this.json<"/v1/jobs/:id", "$get">("GET", "/v1/jobs/:id", { id })).job;
  }
}

function wait(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, RETRY_BASE_MS * 2 ** attempt));
}
