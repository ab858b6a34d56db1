// The whole suite, in order of speed: lint, typecheck (project and demo page), TypeScript tests,
// Python tests, then the end-to-end demo test in Chromium against `npm start`'s server.
// `npm test -- vitest pytest` runs only the named steps.
import { spawnSync } from "node:child_process";

const steps = [
  ["lint", "npm", ["run", "--silent", "lint"]],
  ["types", "npm", ["run", "--silent", "types"]],
  ["typecheck", "npm", ["run", "--silent", "typecheck"]],
  ["typecheck-web", "npx", ["tsc", "--noEmit", "-p", "web"]],
  ["vitest", "npm", ["run", "--silent", "test:ts"]],
  ["pytest", "npm", ["run", "--silent", "test:py"]],
  ["e2e", "npm", ["run", "--silent", "test:e2e"]],
];
const only = process.argv.slice(2);
for (const [name, cmd, args] of steps) {
  if (only.length > 0 && !only.includes(name)) continue;
  const started = Date.now();
  console.log(`\n=== ${name} ===`);
  const r = spawnSync(cmd, args, { stdio: "inherit" });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (r.status !== 0) {
    console.error(`=== ${name} failed after ${seconds} s (exit ${r.status}) ===`);
    process.exit(r.status ?? 1);
  }
  console.log(`=== ${name} ok (${seconds} s) ===`);
}
