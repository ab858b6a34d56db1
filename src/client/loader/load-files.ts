import type { BlobCache } from "../cache/types.ts";
import { ModelFileError, OfflineError } from "../errors.ts";
import { type ClientManifest, checkManifest, type ManifestFile } from "../manifest.ts";
import { type Progress, readBody } from "./download.ts";
import { sha256Digest } from "./sha256.ts";
import type { ModelSource } from "./source.ts";

export interface LoadOptions {
  cache: BlobCache;
  onProgress?: (p: Progress) => void;
  /** Files wanted only as a local path (onnxruntime-node reads the graph itself); needs a fs cache. */
  pathOnly?: (file: ManifestFile) => boolean;
  /** Re-hash cached files on every start (default: trust the digest recorded when they were verified). */
  reverifyCache?: boolean;
  signal?: AbortSignal;
  /** Also fetch the training-step graph (role `onnx-train`), skipped by default. */
  train?: boolean;
  /** Which files to fetch (default: all but roles `reference` and `onnx-train`; see `train`). */
  include?: (file: ManifestFile) => boolean;
  /** A further filter decided from the manifest once it is read (e.g. the chosen graph's files). */
  includeFor?: (manifest: ClientManifest) => (file: ManifestFile) => boolean;
}

/**
 * Roles loading a model for inference skips: the test fixtures prepare lists, and the training
 * step (megabytes of graph only a training client needs).
 */
export const SKIPPED_ROLES: ReadonlySet<string> = new Set(["reference", "onnx-train"]);

/** The default file filter: inference files, plus the training step when `train` is set. */
export const defaultInclude =
  (train = false) =>
  (file: ManifestFile): boolean =>
    !SKIPPED_ROLES.has(file.role) || (train && file.role === "onnx-train");

export interface LoadedFile {
  file: ManifestFile;
  bytes?: Uint8Array;
  path?: string;
  fromCache: boolean;
}

export interface LoadTimings {
  manifestMs: number;
  downloadMs: number;
  verifyMs: number;
  cacheReadMs: number;
  downloadedBytes: number;
  cachedFiles: number;
  /** Files that could not be written to the cache (loaded anyway). */
  cacheWriteErrors: string[];
}

export interface LoadedModelFiles {
  manifest: ClientManifest;
  files: Map<string, LoadedFile>;
  timings: LoadTimings;
}

const now = () => performance.now();

/** A string as a cache-key-safe name. */
const base64Url = (s: string) =>
  btoa(String.fromCharCode(...new TextEncoder().encode(s)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");

/** Cache key of a model file: the files of one model share a folder (see fsCache). */
export const fileKey = (model: string, name: string) => `models/${model}/${name}`;

async function fetchManifest(source: ModelSource, cache: BlobCache, signal?: AbortSignal) {
  const key = `manifests/${base64Url(source.manifestUrl)}`;
  const cached = await cache.get(key);
  let response: Response;
  try {
    const headers: Record<string, string> = {};
    if (cached?.meta.etag !== undefined) headers["if-none-match"] = cached.meta.etag;
    response = await source.open(source.manifestUrl, { headers, signal });
  } catch (error) {
    if (signal?.aborted) throw error;
    if (cached === undefined) throw new OfflineError(source.manifestUrl, { cause: error });
    return checkManifest(JSON.parse(new TextDecoder().decode(cached.bytes)));
  }
  if (response.status === 304 && cached !== undefined) {
    return checkManifest(JSON.parse(new TextDecoder().decode(cached.bytes)));
  }
  if (!response.ok) {
    throw new ModelFileError(
      "http_error",
      "manifest.json",
      `GET ${source.manifestUrl} answered ${response.status}`,
    );
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  const manifest = checkManifest(JSON.parse(new TextDecoder().decode(bytes)));
  const etag = response.headers.get("etag");
  // Only the offline fallback needs this copy: a failing cache must not fail the load.
  await cache.put(key, bytes, etag === null ? {} : { etag }).catch(() => undefined);
  return manifest;
}

/**
 * Fetch the manifest and every file it lists, verifying size and sha256; files already in the
 * cache with the manifest's digest are not downloaded again.
 */
export async function loadModelFiles(
  source: ModelSource,
  options: LoadOptions,
): Promise<LoadedModelFiles> {
  const { cache, onProgress, signal } = options;
  const timings: LoadTimings = {
    manifestMs: 0,
    downloadMs: 0,
    verifyMs: 0,
    cacheReadMs: 0,
    downloadedBytes: 0,
    cachedFiles: 0,
    cacheWriteErrors: [],
  };
  let t = now();
  const manifest = await fetchManifest(source, cache, signal);
  timings.manifestMs = now() - t;
  const files = new Map<string, LoadedFile>();
  const base = options.include ?? defaultInclude(options.train);
  const extra = options.includeFor?.(manifest);
  const include = (f: ManifestFile) => base(f) && (extra === undefined || extra(f));
  for (const file of manifest.files) {
    signal?.throwIfAborted();
    if (!include(file)) continue;
    const key = fileKey(manifest.id, file.name);
    const wantPath = options.pathOnly?.(file) === true && cache.localPath !== undefined;
    t = now();
    const meta = await cache.head(key);
    if (meta?.sha256 === file.sha256 && Number(meta.bytes) === file.bytes) {
      let bytes: Uint8Array | undefined;
      if (!wantPath || options.reverifyCache) {
        bytes = (await cache.get(key))?.bytes;
      }
      const ok =
        bytes === undefined
          ? wantPath
          : !options.reverifyCache || (await sha256Digest(bytes)) === file.sha256;
      timings.cacheReadMs += now() - t;
      if (ok) {
        timings.cachedFiles += 1;
        onProgress?.({ file: file.name, phase: "cached", loaded: file.bytes, total: file.bytes });
        files.set(file.name, {
          file,
          bytes: wantPath ? undefined : bytes,
          path: wantPath ? cache.localPath?.(key) : undefined,
          fromCache: true,
        });
        continue;
      }
    }
    t = now();
    const url = source.fileUrl(file.name);
    let response: Response;
    try {
      response = await source.open(url, { signal });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new OfflineError(url, { cause: error });
    }
    if (!response.ok) {
      throw new ModelFileError("http_error", file.name, `GET ${url} answered ${response.status}`);
    }
    const bytes = await readBody(file.name, response, file.bytes, onProgress);
    timings.downloadMs += now() - t;
    timings.downloadedBytes += bytes.byteLength;
    t = now();
    onProgress?.({ file: file.name, phase: "verify", loaded: file.bytes, total: file.bytes });
    const digest = await sha256Digest(bytes);
    timings.verifyMs += now() - t;
    if (digest !== file.sha256) {
      throw new ModelFileError(
        "sha256_mismatch",
        file.name,
        `downloaded bytes hash to ${digest}, manifest says ${file.sha256}`,
      );
    }
    try {
      await cache.put(key, bytes, { sha256: file.sha256, bytes: String(file.bytes) });
    } catch (error) {
      // A full or failing cache (quota, private mode) costs the next start a download, not this one.
      timings.cacheWriteErrors.push(`${file.name}: ${String(error)}`);
    }
    files.set(file.name, {
      file,
      bytes,
      path: wantPath ? cache.localPath?.(key) : undefined,
      fromCache: false,
    });
    onProgress?.({ file: file.name, phase: "done", loaded: file.bytes, total: file.bytes });
  }
  return { manifest, files, timings };
}
