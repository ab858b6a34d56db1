// Runs pytest over test/python. Exit code 5 ("no tests collected") is a failure here:
// an empty selection must never pass silently.
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const r = spawnSync(
  process.execPath,
  [join(root, "scripts", "py.mjs"), "-m", "pytest", "test/python", ...process.argv.slice(2)],
  { stdio: "inherit", cwd: root },
);
if (r.status === 5) {
  console.error("pytest collected no tests: failing on purpose");
  process.exit(1);
}
process.exit(r.status ?? 1);
