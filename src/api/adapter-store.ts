import { AdapterFormatError, decodeAdapter, sha256Hex } from "../format/index.ts";
import * as db from "./db.ts";
import type { Bindings } from "./env.ts";
import { ApiError, badRequest, unprocessable } from "./errors.ts";
import { type AdapterKvMeta, kvAdapterKey, r2AdapterKey, r2AdapterPrefix } from "./keys.ts";
import {
  KV_RETRY_MS,
  KV_WRITE_ATTEMPTS,
  MAX_HOT_COPY_ROUNDS,
  MAX_VERSIONS_LISTED,
} from "./limits.ts";
import type { LoadedManifest } from "./manifests.ts";

/** Where a version came from (the `source` of the versions list). */
export type VersionSource = "client" | "worker" | "restore";

export type StoredVersion = { version: number; etag: string; bytes: number; created: string };

/** Full validation of adapter bytes against the model: 422 with the format's code on any defect. */
export function validateAdapter(bytes: Uint8Array, loaded: LoadedManifest) {
  try {
    return decodeAdapter(bytes, loaded.expect);
  } catch (err) {
    if (err instanceof AdapterFormatError) throw unprocessable(`adapter.${err.code}`, err.message);
    throw err;
  }
}

const ENTITY_TAG = /^(?:W\/)?"([^"\s]+)"$|^([0-9a-f]{64})$/;

/**
 * Parses an If-Match / If-None-Match value into bare etags ("*" stays "*"); quoted, weak or
 * bare sha256 hex tags are accepted, anything else is a 400 naming the header.
 */
export function parseEtags(header: string | undefined | null, name = "If-Match"): string[] {
  if (header === undefined || header === null) return [];
  if (header.trim() === "*") return ["*"];
  return header.split(",").map((part) => {
    const match = ENTITY_TAG.exec(part.trim());
    const tag = match?.[1] ?? match?.[2];
    if (!tag) {
      throw badRequest(
        "request.bad_etag",
        `${name} ${JSON.stringify(header)} is not a list of entity tags`,
      );
    }
    return tag;
  });
}

/** Whether an If-None-Match header names `etag` (bare) or "*"; lenient, as a cache check may be. */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (!header || !etag) return false;
  return header.trim() === "*" || header.includes(`"${etag}"`) || header.trim() === etag;
}

export const quoteEtag = (etag: string) => `"${etag}"`;

const preconditionFailed = (ifMatch: string[], current: string | null) =>
  new ApiError(
    412,
    "adapter.precondition_failed",
    `If-Match ${ifMatch.map(quoteEtag).join(", ")} does not match the current adapter ${current ? quoteEtag(current) : "(none)"}`,
  );

/**
 * Stores validated bytes as the next version of one user's adapter. D1 allocates the number
 * (head + 1, inside one transaction), so concurrent uploads without If-Match queue and all land
 * in the history; with If-Match the condition is checked in the same transaction and a lost race
 * is a 412. R2 then keeps the bytes and KV the hot copy.
 */
export async function storeVersion(
  env: Bindings,
  model: string,
  user: string,
  bytes: Uint8Array,
  source: VersionSource,
  ifMatch: string[] = [],
): Promise<StoredVersion> {
  const etag = await sha256Hex(bytes);
  const created = new Date().toISOString();
  const condition: db.HeadCondition = !ifMatch.length
    ? { kind: "none" }
    : ifMatch.includes("*")
      ? { kind: "exists" }
      : { kind: "etag", etags: ifMatch };
  const version = await db.commitNextVersion(
    env.DB,
    model,
    user,
    { etag, bytes: bytes.byteLength, created, source },
    condition,
  );
  if (version === null) {
    const now = await db.getHead(env.DB, model, user);
    throw preconditionFailed(ifMatch, now?.etag ?? null);
  }
  const row = { version, etag, bytes: bytes.byteLength, created };
  await env.BUCKET.put(r2AdapterKey(model, user, version), bytes, {
    httpMetadata: { contentType: "application/octet-stream" },
    customMetadata: { etag, created, source },
  });
  await syncHotCopy(env, model, user, row, bytes);
  return row;
}

/**
 * Writes the hot copy. KV accepts one write per second per key in production: a refused write
 * is retried after KV_RETRY_MS, a few times, before the error surfaces.
 */
async function putHotCopy(
  env: Bindings,
  model: string,
  user: string,
  bytes: Uint8Array | ArrayBuffer,
  meta: AdapterKvMeta,
) {
  for (let attempt = 1; ; attempt++) {
    try {
      await env.KV.put(kvAdapterKey(model, user), bytes, { metadata: meta });
      return;
    } catch (err) {
      if (attempt >= KV_WRITE_ATTEMPTS) throw err;
      await new Promise((r) => setTimeout(r, KV_RETRY_MS));
    }
  }
}

/**
 * Writes our version to KV, then makes sure KV ends on D1's head: writers finishing out of
 * order re-copy the newest head, so the last KV write is always checked against D1.
 */
async function syncHotCopy(
  env: Bindings,
  model: string,
  user: string,
  mine: StoredVersion,
  bytes: Uint8Array,
) {
  let written: AdapterKvMeta = { etag: mine.etag, version: mine.version, created: mine.created };
  await putHotCopy(env, model, user, bytes, written);
  for (let i = 0; i < MAX_HOT_COPY_ROUNDS; i++) {
    const head = await db.getHead(env.DB, model, user);
    if (!head) {
      // A DELETE ran after our commit: nothing of this adapter may stay readable.
      await env.KV.delete(kvAdapterKey(model, user));
      await env.BUCKET.delete(r2AdapterKey(model, user, mine.version));
      return;
    }
    if (head.version <= written.version) return;
    // A newer version committed; its writer copies it too unless it already finished.
    const newer = await env.BUCKET.get(r2AdapterKey(model, user, head.version));
    if (!newer) return;
    written = {
      etag: head.etag,
      version: head.version,
      created: newer.customMetadata?.created ?? new Date().toISOString(),
    };
    await putHotCopy(env, model, user, await newer.arrayBuffer(), written);
  }
}

/** The current adapter from KV: one read serves bytes and metadata. */
export function readHotCopy(env: Bindings, model: string, user: string) {
  return env.KV.getWithMetadata<AdapterKvMeta>(kvAdapterKey(model, user), "arrayBuffer");
}

/**
 * Deletes every version (R2), the index (D1) and the hot copy (KV) of one user's adapter.
 * An upload that commits while this runs survives as a fresh history: R2 objects D1 still
 * lists are kept, and KV is copied again from D1's head if one exists afterwards.
 */
export async function deleteAllVersions(env: Bindings, model: string, user: string) {
  await db.deleteAdapter(env.DB, model, user);
  await env.KV.delete(kvAdapterKey(model, user));
  const prefix = r2AdapterPrefix(model, user);
  let cursor: string | undefined;
  do {
    const page = await env.BUCKET.list({ prefix, cursor, limit: 1000 });
    if (page.objects.length) {
      const listed = await db.listVersions(env.DB, model, user, MAX_VERSIONS_LISTED);
      const keep = new Set(listed.map((v) => r2AdapterKey(model, user, v.version)));
      const drop = page.objects.map((o) => o.key).filter((k) => !keep.has(k));
      if (drop.length) await env.BUCKET.delete(drop);
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  const head = await db.getHead(env.DB, model, user);
  if (head) {
    const object = await env.BUCKET.get(r2AdapterKey(model, user, head.version));
    if (object) {
      await putHotCopy(env, model, user, await object.arrayBuffer(), {
        etag: head.etag,
        version: head.version,
        created: object.customMetadata?.created ?? new Date().toISOString(),
      });
    }
  }
}
