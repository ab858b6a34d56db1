import {
  type BlobCache,
  type ClientManifest,
  chooseGraph,
  defaultCache,
  graphFileFilter,
  loadModel,
  type PersonalModel,
  type Progress,
  SKIPPED_ROLES,
} from "../../src/client/index.ts";
import { formatBytes } from "./dom.ts";

/** Where onnxruntime-web's .wasm/.mjs files are served (copied there by the web build). */
const ORT_FILES = "/ort/";

export interface LoadView {
  progress: HTMLProgressElement;
  status: HTMLElement;
  box: HTMLElement;
}

/**
 * The browser cache, except that a failed store (Chromium refuses some very large Cache Storage
 * entries) skips caching that file instead of failing the load; `skipped` lists what was not kept.
 */
async function tolerantCache(skipped: string[]): Promise<BlobCache> {
  const inner = await defaultCache();
  return {
    kind: inner.kind,
    get: (key) => inner.get(key),
    head: (key) => inner.head(key),
    delete: (key) => inner.delete(key),
    async put(key, bytes, meta) {
      try {
        await inner.put(key, bytes, meta);
      } catch (error) {
        skipped.push(
          `${key.split("/").pop()} (${formatBytes(bytes.byteLength)}: ${String(error)})`,
        );
      }
    },
  };
}

/** Loads the model from the edge API with a progress bar over all its files (cached after once). */
export async function loadWithProgress(
  modelUrl: string,
  device: "webgpu" | "wasm",
  view: LoadView,
): Promise<PersonalModel> {
  view.box.dataset.state = "loading";
  view.status.textContent = "fetching the manifest…";
  const manifest = (await (await fetch(modelUrl)).json()) as ClientManifest;
  // Roles the loader skips (test fixtures, the training step) and other devices' graphs are not
  // part of the download.
  const wanted = graphFileFilter(manifest, chooseGraph(manifest, device));
  const total = manifest.files
    .filter((f) => !SKIPPED_ROLES.has(f.role) && wanted(f))
    .reduce((sum, f) => sum + f.bytes, 0);
  const done = new Map<string, number>();
  const onProgress = (p: Progress) => {
    done.set(p.file, p.phase === "download" ? p.loaded : p.total);
    const loaded = [...done.values()].reduce((a, b) => a + b, 0);
    view.progress.value = total === 0 ? 0 : loaded / total;
    const verb =
      p.phase === "cached"
        ? "from the browser cache"
        : p.phase === "verify"
          ? "verifying"
          : "downloading";
    view.status.textContent = `${verb} ${p.file}: ${formatBytes(loaded)} of ${formatBytes(total)} (model still loading)`;
  };
  const started = performance.now();
  const skipped: string[] = [];
  const cache = await tolerantCache(skipped);
  const model = await loadModel(modelUrl, { device, wasmPaths: ORT_FILES, onProgress, cache });
  view.progress.value = 1;
  view.box.dataset.state = "ready";
  const t = model.timings;
  const uncached =
    skipped.length === 0
      ? ""
      : ` — not cached in this browser, downloaded again next time: ${skipped.join("; ")}`;
  const kept =
    t.downloadedBytes === 0
      ? `all ${t.cachedFiles} files from this browser's Cache Storage, nothing downloaded`
      : `downloaded ${formatBytes(t.downloadedBytes)}, kept in this browser's Cache Storage (${t.cachedFiles} files were there already)`;
  view.status.textContent = `ready in ${((performance.now() - started) / 1000).toFixed(1)} s (${formatBytes(total)}; session ${(t.sessionMs / 1000).toFixed(1)} s) — ${model.manifest.id}, graph ${model.graph.name} (${model.graph.weightsDtype}), ${model.manifest.modules.length} adapted modules, rank ${model.manifest.rank}; ${kept}${uncached}`;
  return model;
}
