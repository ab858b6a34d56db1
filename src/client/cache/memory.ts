import { type BlobCache, type CachedBlob, checkKey } from "./types.ts";

/** In-memory cache: tests, and apps that want no persistence. */
export function memoryCache(): BlobCache {
  const map = new Map<string, CachedBlob>();
  return {
    kind: "memory",
    async get(key) {
      return map.get(checkKey(key));
    },
    async head(key) {
      return map.get(checkKey(key))?.meta;
    },
    async put(key, bytes, meta) {
      map.set(checkKey(key), { bytes: bytes.slice(), meta: { ...meta } });
    },
    async delete(key) {
      map.delete(checkKey(key));
    },
  };
}
