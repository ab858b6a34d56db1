import { isNode } from "../platform.ts";
import { cacheStorageCache } from "./cache-storage.ts";
import { defaultCacheDir, fsCache } from "./fs.ts";
import { memoryCache } from "./memory.ts";
import type { BlobCache } from "./types.ts";

export { cacheStorageCache } from "./cache-storage.ts";
export { defaultCacheDir, fsCache } from "./fs.ts";
export { memoryCache } from "./memory.ts";
export type { BlobCache, CachedBlob } from "./types.ts";

/** The platform's persistent cache: a folder in Node, Cache Storage in a browser, else memory. */
export async function defaultCache(): Promise<BlobCache> {
  if (isNode()) return fsCache(await defaultCacheDir());
  if (typeof caches !== "undefined") return cacheStorageCache();
  return memoryCache();
}
