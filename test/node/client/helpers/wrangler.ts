// The real edge API for a test file: the project's local edge harness (scripts/edge/wrangler.mjs:
// `wrangler dev` on 127.0.0.1, a temporary persist folder with real local KV, R2 and D1), stopped
// by its PID.
import { join } from "node:path";
import { startLocalEdge } from "../../../../scripts/edge/wrangler.mjs";
import { mintToken, type Role } from "../../../../src/shared/tokens.ts";

export const SECRET = "client-test-secret";
export const AUDIENCE = "loraxs-edge";
/** Writes per subject per minute in the test API: low, so a test can reach 429. */
export const WRITE_LIMIT = 12;

export interface LocalApi {
  url: string;
  token(sub: string, role?: Role): Promise<string>;
  stop(): Promise<void>;
}

export async function startApi(): Promise<LocalApi> {
  const edge = await startLocalEdge({
    vars: { JWT_SECRET: SECRET, WRITE_RATE_LIMIT: String(WRITE_LIMIT) },
  });
  return {
    url: edge.url,
    token: (sub, role = "user") =>
      mintToken({ sub, role, ttlSeconds: 3600, secret: SECRET, audience: AUDIENCE }),
    stop: edge.stop,
  };
}

/** Publish a prepared model folder through the API (admin): manifest, then each listed file. */
export async function publishModel(api: LocalApi, dir: string): Promise<void> {
  const { readFile } = await import("node:fs/promises");
  const manifestText = await readFile(join(dir, "manifest.json"), "utf8");
  const manifest = JSON.parse(manifestText) as { id: string; files: { name: string }[] };
  const admin = await api.token("admin", "admin");
  const headers = { authorization: `Bearer ${admin}` };
  const m = await fetch(`${api.url}/v1/models/${manifest.id}/manifest`, {
    method: "PUT",
    headers: { ...headers, "content-type": "application/json" },
    body: manifestText,
  });
  if (m.status !== 201) throw new Error(`publishing the manifest: ${m.status} ${await m.text()}`);
  for (const f of manifest.files) {
    const bytes = await readFile(join(dir, f.name));
    const r = await fetch(`${api.url}/v1/models/${manifest.id}/files/${f.name}`, {
      method: "PUT",
      headers: {
        ...headers,
        "content-type": "application/octet-stream",
        "content-length": String(bytes.byteLength),
      },
      body: bytes,
    });
    if (r.status !== 201) throw new Error(`uploading ${f.name}: ${r.status} ${await r.text()}`);
  }
}
