// Builds the tiny test models with `npm run prepare-model` when .cache/models lacks them, so the
// suite works on a fresh clone. A lock folder keeps parallel test files from building twice.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { codeStamp, stampMatches, writeStamp } from "./code-stamp.ts";

export const REPO = resolve(import.meta.dirname, "../../../..");
export const MODELS_DIR = join(REPO, ".cache", "models");

/** How long to wait for another test file's build of the same model (prepare takes ~1 min). */
const LOCK_WAIT_MS = 280_000;

export async function ensureModel(preset: "tiny-llama" | "tiny-bert"): Promise<string> {
  const dir = join(MODELS_DIR, preset);
  const stamp = codeStamp(REPO);
  const done = () =>
    existsSync(join(dir, "manifest.json")) &&
    existsSync(join(dir, "reference.json")) &&
    stampMatches(dir, stamp);
  if (done()) return dir;
  mkdirSync(MODELS_DIR, { recursive: true });
  const lock = join(MODELS_DIR, `${preset}.lock`);
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (done()) return dir;
      if (Date.now() - started > LOCK_WAIT_MS) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    if (done()) return dir;
    rmSync(dir, { recursive: true, force: true }); // stale or half-built
    const r = spawnSync(
      "npm",
      ["run", "--silent", "prepare-model", "--", "--preset", preset, "--out", dir],
      {
        cwd: REPO,
        stdio: "inherit",
      },
    );
    if (r.status !== 0)
      throw new Error(`prepare-model --preset ${preset} failed (exit ${r.status})`);
    writeStamp(dir, stamp);
    return dir;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
