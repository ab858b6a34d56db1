import { AdapterFormatError, decodeAdapter, sha256Hex } from "../format/index.ts";
import { type AdapterKvMeta, kvAdapterKey, r2AdapterKey } from "../shared/keys.ts";
import { KV_RETRY_MS, KV_WRITE_ATTEMPTS, MAX_HOT_COPY_ROUNDS } from "../shared/limits.ts";
import * as db from "./db.ts";
import type { Bindings } from "./env.ts";
import { ApiError, badRequest, unprocessable } from "./errors.ts";
import type { LoadedManifest } from "./manifests.ts";

/** Where a version came from (the `source` of the versions list). */
export type VersionSource = "client" | "worker" | "restore";

/** Keys per R2 delete call (R2 takes at most 1000). */
const R2_DELETE_BATCH = 1000;

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
  const written: AdapterKvMeta = { etag: mine.etag, version: mine.version, created: mine.created };
  await putHotCopy(env, model, user, bytes, written);
  await settleHotCopy(env, model, user, written, mine.version);
}

/**
 * Re-reads D1's head after a KV write (`written`; null after a KV delete) and copies a newer head
 * or deletes the copy of a deleted adapter, until KV holds the head. Version numbers are never
 * reused, so a head numbered `written.version` is the adapter that was written.
 *
 * `own` is the version whose R2 object the caller has just written: if D1 no longer lists it, a
 * DELETE removed the commit, and its object is deleted here. (A DELETE that removes it after
 * this check deletes the object itself, since its R2 write came first.)
 */
async function settleHotCopy(
  env: Bindings,
  model: string,
  user: string,
  written: AdapterKvMeta | null,
  own?: number,
) {
  let copy = written;
  let unchecked = own;
  for (let i = 0; i < MAX_HOT_COPY_ROUNDS; i++) {
    const head = await db.getHead(env.DB, model, user);
    if (unchecked !== undefined && head?.version !== unchecked) {
      if (!(await db.getVersion(env.DB, model, user, unchecked))) {
        await env.BUCKET.delete(r2AdapterKey(model, user, unchecked));
      }
      unchecked = undefined;
    }
    if (!head) {
      // A DELETE ran after the commit we copied: nothing of this adapter may stay readable.
      if (!copy) return;
      await env.KV.delete(kvAdapterKey(model, user));
      copy = null;
      continue;
    }
    if (copy && head.version <= copy.version) return;
    // A newer version committed; its writer copies it too unless it already finished.
    const newer = await env.BUCKET.get(r2AdapterKey(model, user, head.version));
    if (!newer) return;
    copy = {
      etag: head.etag,
      version: head.version,
      created: newer.customMetadata?.created ?? new Date().toISOString(),
    };
    await putHotCopy(env, model, user, await newer.arrayBuffer(), copy);
  }
}

/** The current adapter from KV: one read serves bytes and metadata. */
export function readHotCopy(env: Bindings, model: string, user: string) {
  return env.KV.getWithMetadata<AdapterKvMeta>(kvAdapterKey(model, user), "arrayBuffer");
}

/**
 * Deletes every version (D1 rows, then their R2 objects) and the hot copy (KV) of one user's
 * adapter. Only the objects of the rows this DELETE removed are deleted: version numbers are
 * never reused, so none of them can belong to an upload that commits while this runs. Such an
 * upload survives as the adapter's new history, and KV is copied again from D1's head if one
 * exists afterwards.
 */
export async function deleteAllVersions(env: Bindings, model: string, user: string) {
  const versions = await db.deleteAdapter(env.DB, model, user);
  await env.KV.delete(kvAdapterKey(model, user));
  for (let i = 0; i < versions.length; i += R2_DELETE_BATCH) {
    const keys = versions.slice(i, i + R2_DELETE_BATCH).map((v) => r2AdapterKey(model, user, v));
    await env.BUCKET.delete(keys);
  }
  await settleHotCopy(env, model, user, null);
}
