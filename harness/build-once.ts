// Builds a test model folder once, even when several test files ask for it at the same time:
// a lock folder serialises builders; the others wait until `isDone` holds.
import { mkdirSync, rmSync } from "node:fs";
import { dirname } from "node:path";

/** prepare (~1 min) plus a step export (~30 s) on a loaded 2-core machine. */
const LOCK_WAIT_MS = 280_000;

export async function buildOnce(
  dir: string,
  isDone: () => boolean,
  build: () => void,
): Promise<string> {
  if (isDone()) return dir;
  mkdirSync(dirname(dir), { recursive: true });
  const lock = `${dir}.lock`;
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(lock); // atomic: fails while another builder holds it
      break;
    } catch {
      if (isDone()) return dir;
      if (Date.now() - started > LOCK_WAIT_MS) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    if (isDone()) return dir;
    rmSync(dir, { recursive: true, force: true }); // stale or half-built
    build();
    return dir;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
