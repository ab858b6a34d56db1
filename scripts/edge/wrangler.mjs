// The one local edge harness: runs wrangler (the project's pinned copy, on this Node) for
// migrations and `wrangler dev` on 127.0.0.1, and stops it by its PID. `npm start`, the
// benchmarks and the tests all start their API through startLocalEdge (or its parts below).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ScriptError } from "./log.mjs";
import { root, webOut } from "./paths.mjs";

const WRANGLER = join(root, "node_modules", "wrangler", "bin", "wrangler.js");

/** No network from local runs: no metrics, no request.cf lookups. */
export const OFFLINE_ENV = { CLOUDFLARE_CF_FETCH_ENABLED: "false", WRANGLER_SEND_METRICS: "false" };

/** Values start and seed need from wrangler.toml: the D1 database name and the token audience. */
export function readWranglerConfig(path = join(root, "wrangler.toml")) {
  const text = readFileSync(path, "utf8");
  const databaseName = /^\s*database_name\s*=\s*"([^"]+)"/m.exec(text)?.[1];
  const audience = /^\s*JWT_AUDIENCE\s*=\s*"([^"]+)"/m.exec(text)?.[1];
  const bucketName = /^\s*bucket_name\s*=\s*"([^"]+)"/m.exec(text)?.[1];
  if (!databaseName) throw new ScriptError(`${path} has no [[d1_databases]] database_name`);
  if (!audience) throw new ScriptError(`${path} has no [vars] JWT_AUDIENCE`);
  if (!bucketName) throw new ScriptError(`${path} has no [[r2_buckets]] bucket_name`);
  return { databaseName, audience, bucketName };
}

/** wrangler's own line per request repeats the API's JSON access log line. */
const ECHOED_REQUEST = /^\[wrangler:info\] (GET|HEAD|PUT|POST|DELETE|PATCH|OPTIONS) /;
const LOOKS_LIKE_ERROR = /✘|\bERROR\b|"level":"error"|Uncaught|exception/i;

/** wrangler dev is ready in about 3 s; a loaded 2-core machine may take much longer. */
export const READY_TIMEOUT_MS = 90_000;

/** A TCP port on 127.0.0.1 that was free a moment ago (and is closed again now). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts wrangler with its output prefixed line by line; resolves to the child. `onLine` sees
 * every line (a benchmark counts them); `quiet` prints none (the last 40 stay in `child.tail`).
 */
export function spawnWrangler(
  args,
  { prefix = "[wrangler]", detached = false, quiet = false, muted = false, onLine } = {},
) {
  const child = spawn(process.execPath, [WRANGLER, ...args], {
    cwd: root,
    env: { ...process.env, ...OFFLINE_ENV, FORCE_COLOR: "0" },
    stdio: ["ignore", "pipe", "pipe"],
    detached,
  });
  const tail = [];
  for (const stream of [child.stdout, child.stderr]) {
    let pending = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk) => {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.trim()) continue;
        onLine?.(line);
        tail.push(line);
        if (tail.length > 40) tail.shift();
        if (quiet || ECHOED_REQUEST.test(line)) continue;
        if (child.muted && !LOOKS_LIKE_ERROR.test(line)) continue;
        console.log(`${prefix} ${line}`);
      }
    });
  }
  child.tail = tail;
  /** While true, only error lines are shown (the scripts' own progress lines say what happens). */
  child.muted = muted;
  return child;
}

/** Runs a wrangler command to completion; a non-zero exit fails with its last lines. */
export function runWrangler(args, options = {}) {
  const child = spawnWrangler(args, { ...options, quiet: true });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code === 0) resolve(child.tail);
      else {
        reject(
          new ScriptError(
            `wrangler ${args.join(" ")} exited with ${code}:\n${child.tail.slice(-15).join("\n")}`,
          ),
        );
      }
    });
  });
}

/** `wrangler d1 migrations apply <db> --local --persist-to <dir>`; returns the applied count line. */
export async function applyLocalMigrations(databaseName, persistTo) {
  const tail = await runWrangler([
    "d1",
    "migrations",
    "apply",
    databaseName,
    "--local",
    "--persist-to",
    persistTo,
  ]);
  const applied = tail.filter((line) => /\.sql\b/.test(line) && /✅|applied/i.test(line)).length;
  return applied > 0 ? `${applied} migration(s) applied` : "already up to date";
}

/**
 * `wrangler r2 object put <bucket>/<key> --file <path>`: local (`persistTo`) has no size limit;
 * remote takes files up to wrangler's 300 MiB.
 */
export async function putR2Object({ bucketName, key, path, persistTo }) {
  const where = persistTo ? ["--local", "--persist-to", persistTo] : ["--remote"];
  await runWrangler([
    "r2",
    "object",
    "put",
    `${bucketName}/${key}`,
    "--file",
    path,
    "--content-type",
    "application/octet-stream",
    ...where,
  ]);
  return persistTo ? "wrangler r2 object put --local" : "wrangler r2 object put --remote";
}

/**
 * Starts `wrangler dev` on 127.0.0.1 in its own process group, so Ctrl-C reaches only this script.
 * `vars` override wrangler.toml's [vars] and .dev.vars (`--var KEY:value`); `inspectorPort` keeps
 * two dev servers off the same default 9229; `args` are passed on (say, `--log-level warn`).
 */
export function startDev({
  port,
  persistTo,
  vars = {},
  inspectorPort,
  args = [],
  ...spawnOptions
}) {
  return spawnWrangler(
    [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--persist-to",
      persistTo,
      ...(inspectorPort === undefined ? [] : ["--inspector-port", String(inspectorPort)]),
      ...Object.entries(vars).flatMap(([key, value]) => ["--var", `${key}:${value}`]),
      "--show-interactive-dev-session=false",
      ...args,
    ],
    { ...spawnOptions, detached: true },
  );
}

/**
 * A local edge API for a test or a benchmark: D1 migrations applied to `persistTo` (a fresh
 * temporary folder when not given, removed on stop), `wrangler dev` on a free port (or `port`),
 * waited for until /v1/health answers. Resolves to `{ url, port, persistTo, child, stop }`;
 * `stop()` ends the process group by its PID. Options not named here go to startDev.
 */
export async function startLocalEdge({
  port,
  persistTo,
  quiet = true,
  readyTimeoutMs = READY_TIMEOUT_MS,
  ...devOptions
} = {}) {
  const temporary = persistTo === undefined;
  const persist = persistTo ?? mkdtempSync(join(tmpdir(), "loraxs-edge-"));
  // wrangler.toml's [assets] folder must exist for wrangler dev to start.
  mkdirSync(webOut, { recursive: true });
  const cleanUp = () => {
    if (temporary) rmSync(persist, { recursive: true, force: true });
  };
  try {
    await applyLocalMigrations(readWranglerConfig().databaseName, persist);
  } catch (error) {
    cleanUp();
    throw error;
  }
  const listenOn = port ?? (await freePort());
  const inspectorPort = devOptions.inspectorPort ?? (await freePort());
  const child = startDev({
    ...devOptions,
    port: listenOn,
    persistTo: persist,
    inspectorPort,
    quiet,
  });
  const url = `http://127.0.0.1:${listenOn}`;
  const stop = async () => {
    await stopGroup(child);
    cleanUp();
  };
  try {
    await waitForHealth(url, child, readyTimeoutMs);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, port: listenOn, persistTo: persist, child, stop };
}

/** Polls `GET /v1/health` until it answers 200; fails early if the child exits. */
export async function waitForHealth(base, child, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let exited = null;
  child.once("exit", (code) => {
    exited = code;
  });
  let last = "no answer yet";
  while (Date.now() < deadline) {
    if (exited !== null) {
      throw new ScriptError(
        `wrangler dev exited with ${exited}:\n${child.tail.slice(-15).join("\n")}`,
      );
    }
    try {
      const response = await fetch(`${base}/v1/health`);
      if (response.ok) return;
      last = `status ${response.status}`;
    } catch (error) {
      last = String(error.cause?.code ?? error.message);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new ScriptError(
    `${base}/v1/health did not answer 200 within ${timeoutMs} ms (last: ${last})`,
  );
}

/** Stops a process started with `detached: true` by signalling its group (its PID), then waits. */
export async function stopGroup(child, graceMs = 5000) {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {}
  }, graceMs);
  await exited;
  clearTimeout(timer);
}
