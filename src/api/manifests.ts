import { expectationsFor, type Manifest, parseManifest } from "../manifest/index.ts";
import { r2Manifest } from "../shared/keys.ts";
import { MANIFEST_CACHE_MS } from "../shared/limits.ts";
import type { Bindings } from "./env.ts";
import { ApiError, notFound, unprocessable } from "./errors.ts";

export type LoadedManifest = {
  manifest: Manifest;
  expect: ReturnType<typeof expectationsFor>;
  /** The stored JSON text, served as is. */
  text: string;
  /** R2's quoted etag of the stored JSON. */
  etag: string;
};

// Parsed manifests per isolate: adapter uploads validate against them on every PUT.
const cache = new Map<string, { at: number; value: LoadedManifest }>();

export function forgetManifest(model: string) {
  cache.delete(model);
}

/** The manifest of `model`, or null when it is not published. */
export async function findManifest(env: Bindings, model: string): Promise<LoadedManifest | null> {
  const hit = cache.get(model);
  if (hit && Date.now() - hit.at < MANIFEST_CACHE_MS) return hit.value;
  const object = await env.BUCKET.get(r2Manifest(model));
  if (!object) {
    cache.delete(model);
    return null;
  }
  const text = await object.text();
  let manifest: Manifest;
  try {
    manifest = parseManifest(JSON.parse(text));
  } catch (err) {
    throw new ApiError(
      500,
      "model.stored_manifest_invalid",
      `the stored manifest of ${JSON.stringify(model)} does not parse: ${(err as Error).message}`,
    );
  }
  const value = { manifest, expect: expectationsFor(manifest), text, etag: object.httpEtag };
  cache.set(model, { at: Date.now(), value });
  return value;
}

/** The manifest of `model`; 404 model.not_found when it is not published. */
export async function requireManifest(env: Bindings, model: string): Promise<LoadedManifest> {
  const found = await findManifest(env, model);
  if (!found) throw notFound("model.not_found", `model ${JSON.stringify(model)} is not published`);
  return found;
}

/** Validates an uploaded manifest for `model` (422 with the schema's message). */
export function checkManifest(model: string, json: unknown): Manifest {
  let manifest: Manifest;
  try {
    manifest = parseManifest(json);
  } catch (err) {
    throw unprocessable("manifest.invalid", (err as Error).message);
  }
  if (manifest.id !== model) {
    throw unprocessable(
      "manifest.id_mismatch",
      `manifest id ${JSON.stringify(manifest.id)} does not match the path's model ${JSON.stringify(model)}`,
    );
  }
  return manifest;
}
