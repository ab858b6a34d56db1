// The real edge API for the CLI's network tests: `wrangler dev` on 127.0.0.1 with local KV, D1
// and R2 persisted to a temporary folder, its D1 migrations applied, stopped by PID.

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dirname, "..", "..", "..");
const wrangler = join(root, "node_modules", "wrangler", "bin", "wrangler.js");
const node = join(root, "node_modules", ".bin", "node");
const OFFLINE = {
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_SEND_METRICS: "false",
  CI: "true",
  FORCE_COLOR: "0",
};
/** wrangler dev is ready in about 3 s here; allow for a loaded machine. */
const READY_TIMEOUT_MS = 90_000;

/** A TCP port that was free a moment ago (and is closed now: also what "unreachable" uses). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface DevApi {
  url: string;
  secret: string;
  stop(): Promise<void>;
}

export async function startDevApi(secret: string): Promise<DevApi> {
  const persist = await mkdtemp(join(tmpdir(), "loraxs-cli-api-"));
  const env = { ...process.env, ...OFFLINE };
  const migrate = spawnSync(
    node,
    [wrangler, "d1", "migrations", "apply", "loraxs-edge", "--local", "--persist-to", persist],
    {
      cwd: root,
      env,
      encoding: "utf8",
    },
  );
  if (migrate.status !== 0)
    throw new Error(`d1 migrations failed:\n${migrate.stdout}\n${migrate.stderr}`);
  const port = await freePort();
  const inspectorPort = await freePort(); // another wrangler dev may hold the default 9229
  const child: ChildProcess = spawn(
    node,
    [
      wrangler,
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--persist-to",
      persist,
      "--inspector-port",
      String(inspectorPort),
      "--var",
      `JWT_SECRET:${secret}`,
      "--show-interactive-dev-session=false",
    ],
    { cwd: root, env, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  const log: string[] = [];
  child.stdout?.on("data", (d) => log.push(String(d)));
  child.stderr?.on("data", (d) => log.push(String(d)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`wrangler dev exited with ${child.exitCode}:\n${log.join("")}`);
    try {
      if ((await fetch(`${url}/v1/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      stopGroup(child);
      throw new Error(
        `wrangler dev not ready after ${READY_TIMEOUT_MS} ms:\n${log.join("").slice(-3000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    url,
    secret,
    stop: async () => {
      const exited = new Promise((r) => child.once("exit", r));
      stopGroup(child);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      await rm(persist, { recursive: true, force: true });
    },
  };
}

/** SIGTERM to the process group this test started (wrangler and its workerd child), by PID. */
function stopGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null) return;
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    child.kill("SIGTERM");
  }
}
