import { type BlobCache, checkKey } from "./types.ts";

/** Prefix of the synthetic URLs under which blobs are stored in Cache Storage. */
const URL_PREFIX = "https://loraxs.invalid/";
/** Response header that carries the blob's metadata as JSON. */
const META_HEADER = "x-loraxs-meta";
/** Bodies above this size are written as a stream. */
const STREAM_ABOVE_BYTES = 16 * 1024 * 1024;
/** Chunk size of a streamed body. */
const STREAM_CHUNK_BYTES = 4 * 1024 * 1024;

/** Browser cache: the Cache Storage API (persistent, per origin). */
export async function cacheStorageCache(name = "loraxs-v1"): Promise<BlobCache> {
  const cache = await caches.open(name);
  const url = (key: string) => URL_PREFIX + checkKey(key);
  const meta = (response: Response) =>
    JSON.parse(response.headers.get(META_HEADER) ?? "{}") as Record<string, string>;
  return {
    kind: "cache-storage",
    async get(key) {
      const response = await cache.match(url(key));
      if (response === undefined) return undefined;
      return { bytes: new Uint8Array(await response.arrayBuffer()), meta: meta(response) };
    },
    async head(key) {
      const response = await cache.match(url(key));
      if (response === undefined) return undefined;
      const m = meta(response);
      await response.body?.cancel();
      return m;
    },
    async put(key, bytes, m) {
      // Large files go in as a stream of chunks: one huge in-memory body can exceed the
      // browser's blob limits ("Unexpected internal error" from Cache.put).
      const body: BodyInit =
        bytes.byteLength <= STREAM_ABOVE_BYTES
          ? (bytes as Uint8Array<ArrayBuffer>)
          : new ReadableStream<Uint8Array>({
              start(controller) {
                for (let at = 0; at < bytes.byteLength; at += STREAM_CHUNK_BYTES) {
                  controller.enqueue(
                    bytes.subarray(at, Math.min(at + STREAM_CHUNK_BYTES, bytes.byteLength)),
                  );
                }
                controller.close();
              },
            });
      const response = new Response(body, {
        headers: { [META_HEADER]: JSON.stringify(m), "content-length": String(bytes.byteLength) },
      });
      await cache.put(url(key), response);
    },
    async delete(key) {
      await cache.delete(url(key));
    },
  };
}
