// npm run bench:webgpu [-- build [--train] | run [--train] [bench options]]
//   build: the random-weight SmolLM2-shaped model (bench/webgpu/make_model.py, CPU, a few minutes),
//          transformers.js for the peer row (npm, into bench/webgpu/.build/tjs, not the project),
//          and bench/webgpu/.carry/ (carry.mjs). --train: also the model's training-step graph
//          (make_model.py train, ~5 min), which the carry then holds.
//   run --train: the on-device training benchmark (train.ts) instead of the decode benchmark.
//   run (default): build what is missing, then bench/webgpu/.carry/run.sh on this machine (a GPU
//          machine with Vulkan and python3 + torch). A GPU machine without Node gets the carry
//          folder and runs `bash bench/webgpu/.carry/run.sh` itself.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

const HERE = import.meta.dirname;
const REPO = resolve(HERE, "..", "..");
const [command = "run", ...rest] = process.argv.slice(2);
const run = (cmd, args, env = {}) =>
  execFileSync(cmd, args, { stdio: "inherit", cwd: REPO, env: { ...process.env, ...env } });

function buildAll(train = false) {
  const python = (args) =>
    run(join(REPO, ".venv", "bin", "python"), [join(HERE, "make_model.py"), ...args], {
      PYTHONPATH: join(REPO, "scripts"),
    });
  if (!existsSync(join(HERE, ".model", "recipe.json")))
    python(["build", "--out", join(HERE, ".model")]);
  if (train && !existsSync(join(HERE, ".model", "model.train.onnx")))
    python(["train", "--out", join(HERE, ".model")]);
  const tjs = join(HERE, ".build", "tjs");
  if (!existsSync(join(tjs, "node_modules", "@huggingface", "transformers")))
    run("npm", [
      "install",
      "--prefix",
      tjs,
      "-E",
      "--ignore-scripts",
      "--omit=optional",
      "--no-audit",
      "--no-fund",
      "@huggingface/transformers@4.3.1",
    ]);
  run(process.execPath, [join(HERE, "carry.mjs")]);
}

const train = rest.includes("--train");
if (command === "build") buildAll(train);
else if (command === "run") {
  if (
    !existsSync(join(HERE, ".carry", "run.sh")) ||
    (train && !existsSync(join(HERE, ".model", "model.train.onnx")))
  )
    buildAll(train);
  run("bash", [join(HERE, ".carry", "run.sh"), ...rest]);
} else throw new Error(`unknown command ${JSON.stringify(command)}; use build or run`);
