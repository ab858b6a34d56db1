/** A small persistent key → bytes store with string metadata (model files, last good adapters). */
export interface BlobCache {
  readonly kind: "fs" | "cache-storage" | "memory";
  get(key: string): Promise<CachedBlob | undefined>;
  /** Metadata only, without reading the bytes (size checks of large files). */
  head(key: string): Promise<Record<string, string> | undefined>;
  put(key: string, bytes: Uint8Array, meta: Record<string, string>): Promise<void>;
  delete(key: string): Promise<void>;
  /** Node only: the local path of a stored blob (onnxruntime-node loads models by path). */
  localPath?(key: string): string;
}

export interface CachedBlob {
  bytes: Uint8Array;
  meta: Record<string, string>;
}

/** Keys are `/`-separated names of letters, digits, `.`, `_`, `-` (they become file paths). */
export const KEY_PATTERN = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

export function checkKey(key: string): string {
  if (!KEY_PATTERN.test(key) || key.split("/").some((part) => part === ".." || part === ".")) {
    throw new TypeError(`cache key ${JSON.stringify(key)} does not match ${KEY_PATTERN}`);
  }
  return key;
}
