// Starts the real edge API (`wrangler dev` on 127.0.0.1 with a temporary persist folder: real
// local KV, R2 and D1) for a test file, and stops it by its PID.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mintToken, type Role } from "../../../../src/api/tokens.ts";
import { REPO } from "./models.ts";

export const SECRET = "client-test-secret";
export const AUDIENCE = "loraxs-edge";
/** Writes per subject per minute in the test API: low, so a test can reach 429. */
export const WRITE_LIMIT = 12;
/** wrangler dev is ready in ~3 s; a loaded 2-core machine may take much longer. */
const READY_TIMEOUT_MS = 90_000;

export interface LocalApi {
  url: string;
  token(sub: string, role?: Role): Promise<string>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const address = s.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

export async function startApi(): Promise<LocalApi> {
  const persist = mkdtempSync(join(tmpdir(), "loraxs-api-"));
  const wrangler = join(REPO, "node_modules", ".bin", "wrangler");
  const env = {
    ...process.env,
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_SEND_METRICS: "false",
  };
  const migrate = spawnSync(
    wrangler,
    ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persist],
    {
      cwd: REPO,
      env,
      encoding: "utf8",
    },
  );
  if (migrate.status !== 0)
    throw new Error(`D1 migrations failed: ${migrate.stderr}${migrate.stdout}`);
  const port = await freePort();
  const child: ChildProcess = spawn(
    wrangler,
    [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--persist-to",
      persist,
      "--var",
      `JWT_SECRET:${SECRET}`,
      "--var",
      `WRITE_RATE_LIMIT:${WRITE_LIMIT}`,
      "--show-interactive-dev-session=false",
    ],
    { cwd: REPO, env, detached: true, stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  child.stdout?.on("data", (d) => {
    log += d;
  });
  child.stderr?.on("data", (d) => {
    log += d;
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.pid !== undefined && child.exitCode === null) {
      // wrangler starts workerd as a child: end the process group this test started.
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {}
      await new Promise((r) => {
        child.once("exit", r);
        setTimeout(r, 5000);
      });
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    }
    rmSync(persist, { recursive: true, force: true });
  };
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`wrangler dev exited (${child.exitCode}):\n${log}`);
    }
    try {
      const r = await fetch(`${url}/v1/health`);
      if (r.ok) break;
    } catch {}
    if (Date.now() - started > READY_TIMEOUT_MS) {
      await stop();
      throw new Error(`wrangler dev not ready after ${READY_TIMEOUT_MS} ms:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    url,
    token: (sub, role = "user") =>
      mintToken({ sub, role, ttlSeconds: 3600, secret: SECRET, audience: AUDIENCE }),
    stop,
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
