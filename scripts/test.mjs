// The whole suite, in order of speed: lint, typecheck (project and demo page), TypeScript tests,
// Python tests, then the end-to-end demo test in Chromium against `npm start`'s server.
// `npm test -- vitest pytest` runs only the named steps.
// No silent skips: a suite skipped for a missing tool (test/shared/requirements.ts) is named in
// the last lines with the command that installs it; under CI=true a missing Chromium or Python
// fails the suite that needs it instead.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const steps = [
  ["lint", "npm", ["run", "--silent", "lint"]],
  ["types", "npm", ["run", "--silent", "types"]],
  ["typecheck", "npm", ["run", "--silent", "typecheck"]],
  ["typecheck-web", "npx", ["tsc", "--noEmit", "-p", "web"]],
  ["vitest", "npm", ["run", "--silent", "test:ts"]],
  ["pytest", "npm", ["run", "--silent", "test:py"]],
  ["e2e", "npm", ["run", "--silent", "test:e2e"]],
];
const skipDir = mkdtempSync(join(tmpdir(), "loraxs-skips-"));
const skipLog = join(skipDir, "skipped.txt");
const env = { ...process.env, LORAXS_SKIP_LOG: skipLog };

/** The loud closing lines: every suite skipped for a missing tool, and how to install it. */
function reportSkips() {
  const lines = existsSync(skipLog) ? readFileSync(skipLog, "utf8").trim().split("\n") : [];
  rmSync(skipDir, { recursive: true, force: true });
  const unique = [...new Set(lines.filter((l) => l !== ""))];
  if (unique.length === 0) return;
  console.error(
    `\n!!! ${unique.length} suite(s) SKIPPED for a missing tool: this run did not test them`,
  );
  for (const line of unique) console.error(`!!! ${line}`);
}

const only = process.argv.slice(2);
for (const [name, cmd, args] of steps) {
  if (only.length > 0 && !only.includes(name)) continue;
  const started = Date.now();
  console.log(`\n=== ${name} ===`);
  const r = spawnSync(cmd, args, { stdio: "inherit", env });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (r.status !== 0) {
    console.error(`=== ${name} failed after ${seconds} s (exit ${r.status}) ===`);
    reportSkips();
    process.exit(r.status ?? 1);
  }
  console.log(`=== ${name} ok (${seconds} s) ===`);
}
reportSkips();
