import { createRoute } from "@hono/zod-openapi";
import { r2AdapterKey } from "../../shared/keys.ts";
import { DEFAULT_VERSIONS_LISTED, MAX_ADAPTER_BYTES } from "../../shared/limits.ts";
import {
  deleteAllVersions,
  noneMatch,
  parseEtags,
  quoteEtag,
  readHotCopy,
  storeVersion,
  validateAdapter,
} from "../adapter-store.ts";
import { guard, identityOf } from "../auth.ts";
import { readBytes } from "../body.ts";
import * as db from "../db.ts";
import type { Bindings } from "../env.ts";
import { notFound } from "../errors.ts";
import { requireManifest } from "../manifests.ts";
import { bearer, errors, router } from "../openapi.ts";
import { limited } from "../rate-limit.ts";
import {
  Binary,
  StoredSchema,
  UserParams,
  VersionParams,
  VersionsQuery,
  VersionsSchema,
} from "../schemas.ts";

const base = "/v1/models/{model}/users/{user}/adapter";
const adapterBytes = { "application/octet-stream": { schema: Binary } };
const adapterHeaders = {
  ETag: { schema: { type: "string" as const }, description: "Quoted sha256 hex of the bytes" },
  "X-Adapter-Version": { schema: { type: "integer" as const } },
};

const getAdapter = createRoute({
  method: "get",
  path: base,
  tags: ["adapters"],
  summary: "The user's current adapter (one KV read)",
  security: bearer,
  middleware: [guard(["user", "admin", "worker"], "owner")] as const,
  request: { params: UserParams },
  responses: {
    200: { description: "Adapter bytes", content: adapterBytes, headers: adapterHeaders },
    304: { description: "Matches If-None-Match", headers: adapterHeaders },
    ...errors(400, 401, 403, 404),
  },
});

const putAdapter = createRoute({
  method: "put",
  path: base,
  tags: ["adapters"],
  summary: "Store a new version after full validation; If-Match for optimistic concurrency",
  security: bearer,
  middleware: [guard(["user", "worker"], "owner"), limited] as const,
  request: {
    params: UserParams,
    body: {
      content: adapterBytes,
      required: true,
      description: `At most ${MAX_ADAPTER_BYTES} bytes`,
    },
  },
  responses: {
    201: {
      description: "Stored as a new version",
      content: { "application/json": { schema: StoredSchema } },
      headers: adapterHeaders,
    },
    ...errors(400, 401, 403, 404, 412, 413, 422, 429),
  },
});

const deleteAdapter = createRoute({
  method: "delete",
  path: base,
  tags: ["adapters"],
  summary: "Delete every version, the index and the cached copy",
  security: bearer,
  middleware: [guard(["user", "admin"], "owner"), limited] as const,
  request: { params: UserParams },
  responses: {
    204: { description: "Deleted (also when nothing was stored)" },
    ...errors(400, 401, 403, 429),
  },
});

const listVersions = createRoute({
  method: "get",
  path: `${base}/versions`,
  tags: ["adapters"],
  summary: "Version history, newest first",
  security: bearer,
  middleware: [guard(["user", "admin"], "owner")] as const,
  request: { params: UserParams, query: VersionsQuery },
  responses: {
    200: { description: "Versions", content: { "application/json": { schema: VersionsSchema } } },
    ...errors(400, 401, 403),
  },
});

const getVersion = createRoute({
  method: "get",
  path: `${base}/versions/{version}`,
  tags: ["adapters"],
  summary: "One version's bytes",
  security: bearer,
  middleware: [guard(["user", "admin"], "owner")] as const,
  request: { params: VersionParams },
  responses: {
    200: { description: "Adapter bytes", content: adapterBytes, headers: adapterHeaders },
    ...errors(400, 401, 403, 404),
  },
});

const restoreVersion = createRoute({
  method: "post",
  path: `${base}/versions/{version}/restore`,
  tags: ["adapters"],
  summary: "Make an older version current, as a new version",
  security: bearer,
  middleware: [guard(["user"], "owner"), limited] as const,
  request: { params: VersionParams },
  responses: {
    201: {
      description: "Restored as a new version",
      content: { "application/json": { schema: StoredSchema } },
      headers: adapterHeaders,
    },
    ...errors(400, 401, 403, 404, 412, 422, 429),
  },
});

const bytesResponse = (
  body: ArrayBuffer | ReadableStream | null,
  etag: string,
  version: number,
  status = 200,
) =>
  new Response(body, {
    status,
    headers: {
      "content-type": "application/octet-stream",
      etag: quoteEtag(etag),
      "x-adapter-version": String(version),
      "cache-control": "private, no-cache",
    },
  });

/** One stored version of a user's adapter, or 404 `adapter.version_not_found`. */
async function storedVersion(env: Bindings, model: string, user: string, version: number) {
  const object = await env.BUCKET.get(r2AdapterKey(model, user, version));
  if (!object) {
    throw notFound(
      "adapter.version_not_found",
      `user ${JSON.stringify(user)} has no version ${version} for model ${JSON.stringify(model)}`,
    );
  }
  return object;
}

export const adapterRoutes = router()
  .openapi(getAdapter, async (c) => {
    const { model, user } = c.req.valid("param");
    const { value, metadata } = await readHotCopy(c.env, model, user);
    if (value === null || metadata === null) {
      throw notFound(
        "adapter.not_found",
        `no adapter for user ${JSON.stringify(user)} and model ${JSON.stringify(model)}`,
      );
    }
    if (noneMatch(c.req.header("if-none-match"), metadata.etag)) {
      return bytesResponse(null, metadata.etag, metadata.version, 304) as never;
    }
    return bytesResponse(value, metadata.etag, metadata.version) as never;
  })
  .openapi(putAdapter, async (c) => {
    const { model, user } = c.req.valid("param");
    const identity = identityOf(c);
    const bytes = await readBytes(c.req.raw, MAX_ADAPTER_BYTES, "adapter");
    const loaded = await requireManifest(c.env, model);
    validateAdapter(bytes, loaded);
    const source = identity.role === "worker" ? "worker" : "client";
    const stored = await storeVersion(
      c.env,
      model,
      user,
      bytes,
      source,
      parseEtags(c.req.header("if-match")),
    );
    return c.json({ version: stored.version, etag: stored.etag, bytes: stored.bytes }, 201, {
      etag: quoteEtag(stored.etag),
      "x-adapter-version": String(stored.version),
    });
  })
  .openapi(deleteAdapter, async (c) => {
    const { model, user } = c.req.valid("param");
    await deleteAllVersions(c.env, model, user);
    return c.body(null, 204);
  })
  .openapi(listVersions, async (c) => {
    const { model, user } = c.req.valid("param");
    const { limit } = c.req.valid("query");
    const versions = await db.listVersions(c.env.DB, model, user, limit ?? DEFAULT_VERSIONS_LISTED);
    return c.json({ versions }, 200);
  })
  .openapi(getVersion, async (c) => {
    const { model, user, version } = c.req.valid("param");
    const object = await storedVersion(c.env, model, user, version);
    return bytesResponse(object.body, object.customMetadata?.etag ?? "", version) as never;
  })
  .openapi(restoreVersion, async (c) => {
    const { model, user, version } = c.req.valid("param");
    const object = await storedVersion(c.env, model, user, version);
    const bytes = new Uint8Array(await object.arrayBuffer());
    // The model may have been republished since: restoring re-checks against today's manifest.
    validateAdapter(bytes, await requireManifest(c.env, model));
    const stored = await storeVersion(
      c.env,
      model,
      user,
      bytes,
      "restore",
      parseEtags(c.req.header("if-match")),
    );
    return c.json({ version: stored.version, etag: stored.etag, bytes: stored.bytes }, 201, {
      etag: quoteEtag(stored.etag),
      "x-adapter-version": String(stored.version),
    });
  });
