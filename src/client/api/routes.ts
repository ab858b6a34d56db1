// The edge API routes the client, the CLI, the demo page and the scripts call, and the JSON each
// answers. test/worker/api-client.test.ts checks this table against the API's own route schemas
// (its hono AppType) at compile time, so a renamed route or a changed answer breaks the build.

/** `201 {"version", "etag", "bytes"}` of PUT adapter and restore. */
export interface StoredAdapter {
  /** The API's version number of the stored adapter (1 for a user's first). */
  version: number;
  etag: string;
  bytes: number;
}

/** One entry of `GET …/adapter/versions`, newest first. */
export interface AdapterVersion {
  version: number;
  etag: string;
  bytes: number;
  created: string;
  source: string;
}

/** A training job (docs/contracts.md, "Training jobs"). */
export interface Job {
  id: string;
  model: string;
  user: string;
  status: "queued" | "running" | "succeeded" | "failed";
  attempts: number;
  created: string;
  updated: string;
  error: string | null;
  version: number | null;
}

/** Route → method → what a 2xx answers (`Uint8Array` for bytes, `null` for no body). */
export interface Routes {
  "/v1/health": { $get: { ok: boolean } };
  "/v1/models": { $get: { models: Record<string, unknown>[] } };
  "/v1/models/:model": { $get: unknown };
  "/v1/models/:model/manifest": { $put: unknown };
  "/v1/models/:model/files/:name": { $get: Uint8Array; $put: unknown };
  "/v1/models/:model/users/:user/adapter": {
    $get: Uint8Array;
    $put: StoredAdapter;
    $delete: null;
  };
  "/v1/models/:model/users/:user/adapter/versions": { $get: { versions: AdapterVersion[] } };
  "/v1/models/:model/users/:user/adapter/versions/:version": { $get: Uint8Array };
  "/v1/models/:model/users/:user/adapter/versions/:version/restore": { $post: StoredAdapter };
  "/v1/models/:model/users/:user/jobs": { $post: { job: Job } };
  "/v1/jobs/:id": { $get: { job: Job } };
}

export type Route = keyof Routes;

/** The `:name` segments of a route, as an object of strings. */
export type ParamsOf<R extends string> = R extends `${string}:${infer P}/${infer Rest}`
  ? { [K in P]: string | number } & ParamsOf<`/${Rest}`>
  : R extends `${string}:${infer P}`
    ? { [K in P]: string | number }
    : Record<never, never>;

/** `/v1/models/:model` with `{model: "m"}` → `/v1/models/m`, each segment URL-encoded. */
export function fillRoute<R extends Route>(route: R, params: ParamsOf<R>): string {
  const values = params as Record<string, string | number>;
  return route.replace(/:([A-Za-z]+)/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`route ${route} needs :${name}`);
    return encodeURIComponent(String(value));
  });
}
