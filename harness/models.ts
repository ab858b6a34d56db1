// Builds the tiny test models with `npm run prepare-model` when .cache/models lacks them, so the
// suite works on a fresh clone. A lock folder keeps parallel test files from building twice.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildOnce } from "./build-once.ts";
import { codeStamp, stampMatches, writeStamp } from "./code-stamp.ts";

export const REPO = resolve(import.meta.dirname, "..");
export const MODELS_DIR = join(REPO, ".cache", "models");

export async function ensureModel(
  preset: "tiny-llama" | "tiny-gemma3" | "tiny-bert",
): Promise<string> {
  const dir = join(MODELS_DIR, preset);
  const stamp = codeStamp(REPO);
  const done = () =>
    existsSync(join(dir, "manifest.json")) &&
    existsSync(join(dir, "reference.json")) &&
    stampMatches(dir, stamp);
  return buildOnce(dir, done, () => {
    const args = ["run", "--silent", "prepare-model", "--", "--preset", preset, "--out", dir];
    const r = spawnSync("npm", args, { cwd: REPO, stdio: "inherit" });
    if (r.status !== 0)
      throw new Error(`prepare-model --preset ${preset} failed (exit ${r.status})`);
    writeStamp(dir, stamp);
  });
}
