// Types of wrangler.mjs (the local edge harness) for the TypeScript tests that start it.
import type { ChildProcess } from "node:child_process";

export const OFFLINE_ENV: Record<string, string>;
export const READY_TIMEOUT_MS: number;

export interface WranglerChild extends ChildProcess {
  /** The last 40 lines of its output. */
  tail: string[];
  /** While true, only error lines are printed. */
  muted: boolean;
}

export interface SpawnOptions {
  prefix?: string;
  detached?: boolean;
  quiet?: boolean;
  /** Start muted: only error lines are printed (see WranglerChild.muted). */
  muted?: boolean;
  onLine?: (line: string) => void;
}

export interface DevOptions extends Omit<SpawnOptions, "detached"> {
  /** `--var KEY:value` for each entry: overrides wrangler.toml [vars] and .dev.vars. */
  vars?: Record<string, string>;
  inspectorPort?: number;
  /** More arguments for `wrangler dev`. */
  args?: string[];
}

export interface LocalEdge {
  url: string;
  port: number;
  persistTo: string;
  child: WranglerChild;
  stop(): Promise<void>;
}

export function readWranglerConfig(path?: string): {
  databaseName: string;
  audience: string;
  bucketName: string;
};
export function freePort(): Promise<number>;
export function spawnWrangler(args: string[], options?: SpawnOptions): WranglerChild;
export function runWrangler(args: string[], options?: SpawnOptions): Promise<string[]>;
export function applyLocalMigrations(databaseName: string, persistTo: string): Promise<string>;
export function putR2Object(options: {
  bucketName: string;
  key: string;
  path: string;
  persistTo?: string;
}): Promise<string>;
export function startDev(options: DevOptions & { port: number; persistTo: string }): WranglerChild;
export function startLocalEdge(
  options?: DevOptions & { port?: number; persistTo?: string; readyTimeoutMs?: number },
): Promise<LocalEdge>;
export function waitForHealth(base: string, child: ChildProcess, timeoutMs: number): Promise<void>;
export function stopGroup(child: ChildProcess, graceMs?: number): Promise<void>;
