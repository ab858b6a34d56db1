// Runs `npm start`'s script as a child (own process group) and waits for its "ready" line.
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const READY = /\[start\] ready: (http:\/\/127\.0\.0\.1:\d+)\//;

export interface StartedServer {
  url: string;
  child: ChildProcess;
  log: string[];
  stop(): Promise<void>;
}

/** Starts scripts/start.mjs with `args`; resolves once it prints its URL, fails if it exits first. */
export function startServer(args: string[], timeoutMs: number): Promise<StartedServer> {
  const child = spawn(process.execPath, [`${root}scripts/start.mjs`, ...args], {
    cwd: root,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const log: string[] = [];
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    process.kill(child.pid as number, "SIGTERM");
    await exited;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(
        new Error(
          `npm start printed no ready line within ${timeoutMs} ms:\n${log.slice(-30).join("\n")}`,
        ),
      );
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (!line) continue;
        log.push(line);
        if (process.env.E2E_VERBOSE) console.log(line);
        const match = READY.exec(line);
        if (match?.[1]) {
          clearTimeout(timer);
          resolve({ url: match[1], child, log, stop });
        }
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(
        new Error(
          `npm start exited with ${code} before it was ready:\n${log.slice(-30).join("\n")}`,
        ),
      );
    });
  });
}
