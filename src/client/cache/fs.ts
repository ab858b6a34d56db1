import { type BlobCache, checkKey } from "./types.ts";

/** Default cache folder in Node: $LORAXS_CACHE, else ~/.cache/loraxs. */
export async function defaultCacheDir(): Promise<string> {
  const { homedir } = await import("node:os");
  const { join } = await import("node:path");
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process
    ?.env;
  return env?.LORAXS_CACHE ?? join(homedir(), ".cache", "loraxs");
}

/**
 * A cache folder (Node): each blob is `<dir>/<key>` beside `<dir>/<key>.meta.json`. Files of one
 * model share a folder under their own names, so onnxruntime-node finds `model.onnx.data` next to
 * `model.onnx`. Writes go to a temporary name and are renamed into place (no torn files).
 */
export async function fsCache(dir: string): Promise<BlobCache> {
  const fs = await import("node:fs/promises");
  const path = await import("node:path");
  const full = (key: string) => path.join(dir, ...checkKey(key).split("/"));
  const readMeta = async (key: string) => {
    try {
      return JSON.parse(await fs.readFile(`${full(key)}.meta.json`, "utf8")) as Record<
        string,
        string
      >;
    } catch {
      return undefined;
    }
  };
  return {
    kind: "fs",
    localPath: full,
    head: readMeta,
    async get(key) {
      const meta = await readMeta(key);
      if (meta === undefined) return undefined;
      try {
        const buf = await fs.readFile(full(key));
        return { bytes: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), meta };
      } catch {
        return undefined;
      }
    },
    async put(key, bytes, meta) {
      const target = full(key);
      await fs.mkdir(path.dirname(target), { recursive: true });
      const tmp = `${target}.${Date.now()}.${Math.random().toString(36).slice(2)}.tmp`;
      await fs.writeFile(tmp, bytes);
      await fs.rename(tmp, target);
      // The metadata is written last: a blob without it is treated as absent.
      await fs.writeFile(`${target}.meta.json.tmp`, JSON.stringify(meta));
      await fs.rename(`${target}.meta.json.tmp`, `${target}.meta.json`);
    },
    async delete(key) {
      await fs.rm(`${full(key)}.meta.json`, { force: true });
      await fs.rm(full(key), { force: true });
    },
  };
}
