// Runs the project's Python (the .venv made by setup-python.mjs) with scripts/ on the path.
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const setup = spawnSync(process.execPath, [join(root, "scripts", "setup-python.mjs")], {
  stdio: ["ignore", "ignore", "inherit"],
});
if (setup.status !== 0) process.exit(setup.status ?? 1);

const env = { ...process.env, PYTHONPATH: join(root, "scripts"), HF_HUB_OFFLINE: "1" };
const r = spawnSync(join(root, ".venv", "bin", "python"), process.argv.slice(2), {
  stdio: "inherit",
  env,
});
process.exit(r.status ?? 1);
