// What a suite needs from the machine, and no silent skips: a suite whose tool is missing is
// skipped locally and named (on stderr, and in the closing line of `npm test`, which reads the
// file LORAXS_SKIP_LOG names); under CI=true a missing Chromium or Python fails the run instead.
import { appendFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { CHROMIUM } from "../../harness/browser/chromium.ts";

const root = new URL("../..", import.meta.url).pathname;

export interface Requirement {
  /** What is missing, in a few words. */
  name: string;
  /** Whether it is there. */
  present: () => boolean;
  /** The command that installs it. */
  install: string;
  /** Whether CI must have it (a missing one fails under CI=true). */
  requiredInCi: boolean;
}

export const CHROMIUM_BROWSER: Requirement = {
  name: `Chromium (${CHROMIUM})`,
  present: () => existsSync(CHROMIUM),
  install: "sudo apt-get install chromium (or set CHROMIUM_PATH)",
  requiredInCi: true,
};

export const PYTHON: Requirement = {
  name: "the project's Python (.venv)",
  present: () => existsSync(join(root, ".venv", "bin", "python")),
  install: "npm run setup:python",
  requiredInCi: true,
};

/** These files of a prepared model in models/<id> (not part of CI: its preset downloads and exports it). */
function preparedModel(id: string, label: string, files: string[]): Requirement {
  return {
    name: `${label}'s prepared ${files.join(", ")} (models/${id})`,
    present: () => files.every((f) => existsSync(join(root, "models", id, f))),
    install: `npm run prepare-model -- --preset ${id}`,
    requiredInCi: false,
  };
}

/** These files of SmolLM2's prepared model (0.5 GB, not part of CI). */
export const smollm2 = (...files: string[]) => preparedModel("smollm2-135m", "SmolLM2", files);

/** These files of Gemma 3 270M's prepared model (0.36 GB under Gemma's own terms, not part of CI). */
export const gemma3 = (...files: string[]) => preparedModel("gemma3-270m", "Gemma 3 270M", files);

/**
 * True when `suite` can run: every requirement is present. Otherwise the suite is to be skipped
 * (`describe.skipIf(!canRun(...))`) and is named, or, under CI=true with a requirement CI must
 * have, this throws and the test file fails.
 */
export function canRun(suite: string, ...requirements: Requirement[]): boolean {
  const missing = requirements.filter((r) => !r.present());
  if (missing.length === 0) return true;
  const needed = missing.filter((r) => r.requiredInCi);
  if (process.env.CI === "true" && needed.length > 0) {
    const what = needed.map((r) => `${r.name} (install: ${r.install})`).join(", ");
    throw new Error(`CI=true and "${suite}" cannot run: missing ${what}`);
  }
  for (const r of missing) {
    const line = `SKIPPED "${suite}": missing ${r.name}; install: ${r.install}`;
    console.warn(line);
    const log = process.env.LORAXS_SKIP_LOG;
    if (log) appendFileSync(log, `${line}\n`);
  }
  return false;
}
