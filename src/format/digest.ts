// SHA-256 through Web Crypto (Workers, browsers and Node all provide the global `crypto`).

/** Lowercase hex SHA-256 of `bytes` (an adapter's ETag; a factors file's digest body). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  let hex = "";
  for (const b of new Uint8Array(digest)) hex += b.toString(16).padStart(2, "0");
  return hex;
}

/** `sha256:<hex>`, the way adapters and manifests name a factors file. */
export async function sha256Digest(bytes: Uint8Array): Promise<string> {
  return `sha256:${await sha256Hex(bytes)}`;
}
