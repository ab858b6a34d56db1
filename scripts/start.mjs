// `npm start`: the local edge (wrangler dev with real local KV, D1, R2), the demo page and
// seeded demo users, in the foreground. Ctrl-C stops everything this script started.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";
import { buildWeb } from "./build-web.mjs";
import { parseArgs } from "./edge/args.mjs";
import { listShippedAdapters, seedDemoUsers, writeRandomAdapters } from "./edge/demo-users.mjs";
import { ensureJwtSecret } from "./edge/dev-vars.mjs";
import { reportFailure, ScriptError, steps } from "./edge/log.mjs";
import { publishModel, r2Uploader, readPreparedModel } from "./edge/model-files.mjs";
import { demoConfigPath, devVarsPath, root } from "./edge/paths.mjs";
import { mintDemoTokens } from "./edge/tokens.mjs";
import {
  applyLocalMigrations,
  freePort,
  readWranglerConfig,
  startDev,
  stopGroup,
  waitForHealth,
} from "./edge/wrangler.mjs";

/** wrangler 4 needs Node ≥ 22; npm runs the project's pinned Node 24 from node_modules/.bin. */
const MIN_NODE_MAJOR = 22;
/** wrangler dev is ready in about 3 s here; a cold first start (workerd unpacking, migrations) takes longer. */
const HEALTH_TIMEOUT_MS = 60_000;

const USAGE = "usage: npm start -- [options]";
const SPEC = {
  port: {
    type: "number",
    default: 8787,
    help: "port of wrangler dev on 127.0.0.1 (0 = a free one)",
  },
  prepare: {
    type: "boolean",
    default: true,
    help: "run prepare when the model's ONNX file is missing",
  },
  "train-step": {
    type: "boolean",
    default: false,
    help: "decoders: also export the on-device training step (the page's 'Train on this device' panel)",
  },
  "train-shape": {
    type: "string",
    default: "1x128",
    help: "BxT of the training step with --train-step (rows x tokens per run)",
  },
  python: { type: "boolean", default: true, help: "run `npm run setup:python` first (idempotent)" },
  model: { type: "string", default: "smollm2-135m", help: "model id (a prepare preset)" },
  "models-dir": { type: "string", default: "models", help: "folder holding <model>/manifest.json" },
  "persist-to": { type: "string", default: ".wrangler/state", help: "local KV/D1/R2 state folder" },
  "random-sigma": {
    type: "float",
    default: undefined,
    help: "σ of R in the random demo adapters used when a model ships none (default 0.1)",
  },
};

/** Paths inside the repository shown relative to it, others in full. */
const show = (path) => (path.startsWith(root) ? relative(root, path) || "." : path);

const children = new Set();
let devProcess = null;
let stopping = false;

async function stopAll(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`\n[start] ${signal}: stopping ${children.size} process(es) by PID`);
  for (const child of children) {
    console.log(`[start] stopping PID ${child.pid}`);
    await stopGroup(child);
  }
  console.log("[start] stopped");
  process.exit(signal === "SIGINT" ? 130 : 143);
}

/** Runs a command in its own process group (so stopAll can end it), output shown as it comes. */
function runChild(command, args, env = {}) {
  const child = spawn(command, args, {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, ...env },
    detached: true,
  });
  children.add(child);
  return new Promise((resolvePromise, reject) => {
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      children.delete(child);
      if (code === 0) resolvePromise();
      else reject(new ScriptError(`${command} ${args.join(" ")} exited with ${code ?? signal}`));
    });
  });
}

/** Fails early when something already listens on the port (say, another npm start). */
async function checkPortFree(port) {
  const { createServer } = await import("node:net");
  await new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", (error) =>
      reject(
        new ScriptError(
          `127.0.0.1:${port} is in use (${error.code}); stop what runs there or pass --port <another>`,
        ),
      ),
    );
    server.listen(port, "127.0.0.1", () => server.close(resolvePort));
  });
}

async function main() {
  const major = Number(process.versions.node.split(".")[0]);
  if (major < MIN_NODE_MAJOR) {
    throw new ScriptError(
      `Node ${process.versions.node} is too old for wrangler (needs ${MIN_NODE_MAJOR}+); run \`npm start\`, which uses the project's Node 24`,
    );
  }
  const options = parseArgs(process.argv.slice(2), SPEC, USAGE);
  const abs = (path) => (isAbsolute(path) ? path : resolve(root, path));
  const modelDir = join(abs(options["models-dir"]), options.model);
  const persistTo = abs(options["persist-to"]);
  const port = options.port === 0 ? await freePort() : options.port;
  await checkPortFree(port);
  const base = `http://127.0.0.1:${port}`;
  const step = steps("start", 8);
  for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => void stopAll(signal));

  await step.run("Python environment (npm run setup:python)", async () => {
    if (!options.python) return "skipped (--no-python)";
    await runChild(process.execPath, [join(root, "scripts", "setup-python.mjs")]);
  });

  /** A module of the Python package, run in the project's environment. */
  const python = (...args) =>
    runChild(process.execPath, [join(root, "scripts", "py.mjs"), ...args]);
  /** `npm run prepare-model` for this model into its folder, with `extra` flags. */
  const prepare = (extra) => {
    const out = relative(root, abs(options["models-dir"])) === "models" ? [] : ["--out", modelDir];
    return python("-m", "loraxs.prepare", "--preset", options.model, ...out, ...extra);
  };

  await step.run(`model ${options.model} in ${show(modelDir)}`, async () => {
    const trainShape = options["train-step"] ? checkTrainShape(options["train-shape"]) : null;
    const missing = whatIsMissing(modelDir);
    if (missing === null) {
      const { manifest } = readPreparedModel(modelDir);
      if (trainShape === null || manifest.onnx_train !== undefined) return "prepared";
      if (!options.prepare) {
        throw new ScriptError(
          `${show(modelDir)}/manifest.json has no onnx_train and --no-prepare was given; drop --train-step or --no-prepare`,
        );
      }
      if (!manifest.onnx) {
        // The step graph reads the traced fp32 graph's weights file, which this model skips by
        // default: prepare again with both (its factors are kept).
        console.log(
          `[start] --train-step: ${options.model} has no traced fp32 graph; preparing it with the training step ${trainShape} (minutes)`,
        );
        await prepare(["--train-step", trainShape]);
        return `prepared again with the fp32 graph and training step ${trainShape}`;
      }
      console.log(
        `[start] --train-step: exporting the training step ${trainShape} (about a minute for small models)`,
      );
      const [batch, seq] = trainShape.split("x");
      await python(
        "-m",
        "loraxs.export_train_step",
        "--dir",
        modelDir,
        "--batch",
        batch,
        "--seq",
        seq,
      );
      return `prepared; training step ${trainShape} exported now`;
    }
    if (!options.prepare) {
      throw new ScriptError(
        `${missing} and --no-prepare was given; run \`npm run prepare-model -- --preset ${options.model}\``,
      );
    }
    console.log(
      `[start] ${missing}: preparing it (first run: a minute or more; later runs skip this)`,
    );
    await prepare(trainShape === null ? [] : ["--train-step", trainShape]);
    return "prepared now";
  });
  const model = readPreparedModel(modelDir);
  if (!model.manifest.onnx && !model.manifest.graphs?.some((g) => g.devices.includes("wasm"))) {
    console.log(
      `[start] ${model.manifest.id} has no graph for wasm (docs/prepare.md): the demo page needs a browser with WebGPU`,
    );
  }

  await step.run("web bundle (esbuild → .cache/web)", async () => await buildWeb());

  const { databaseName, audience, bucketName } = readWranglerConfig();
  let secret = "";
  await step.run("local secrets (.dev.vars)", async () => {
    const { secret: value, created } = ensureJwtSecret(devVarsPath);
    secret = value;
    return `JWT_SECRET ${created ? "created in" : "read from"} .dev.vars`;
  });

  let adapters = listShippedAdapters(modelDir);
  if (adapters.length === 0) {
    const out = join(root, ".cache", "demo-adapters", model.manifest.id);
    adapters = writeRandomAdapters(model.manifest, out, options["random-sigma"]);
    console.log(
      `[start] no shipped adapters in ${show(join(modelDir, "adapters"))}/: using ${adapters.length} random (untrained) adapters from ${relative(root, out)}/`,
    );
  }
  const tokens = await mintDemoTokens({ users: adapters.map((a) => a.user), secret, audience });
  writeDemoConfig(model.manifest, adapters, tokens);

  await step.run(`D1 migrations (${databaseName}, local, ${show(persistTo)})`, async () =>
    applyLocalMigrations(databaseName, persistTo),
  );

  await step.run(`wrangler dev on ${base}`, async () => {
    const dev = startDev({ port, persistTo });
    children.add(dev);
    dev.on("exit", (code) => {
      children.delete(dev);
      if (!stopping) {
        console.error(`[start] wrangler dev exited unexpectedly (${code}); stopping`);
        process.exit(1);
      }
    });
    await waitForHealth(base, dev, HEALTH_TIMEOUT_MS);
    devProcess = dev;
    dev.muted = true; // seeding prints its own lines; request logs resume once ready
    return `PID ${dev.pid}, /v1/health answers`;
  });

  await step.run(`seed model ${model.manifest.id} into local R2 (admin API)`, async () =>
    publishModel({
      api: base,
      token: tokens.admin,
      model,
      // Over the API's body limit (the fp32 weights): straight into the same local R2 state.
      putLarge: r2Uploader({ bucketName, modelId: model.manifest.id, persistTo }),
      log: (line) => console.log(`[start] ${line}`),
    }),
  );

  await step.run("seed demo users' adapters", async () => {
    const { seeded, summary } = await seedDemoUsers({
      api: base,
      model: model.manifest.id,
      adapters,
      tokens: tokens.users,
      log: (line) => console.log(`[start] ${line}`),
    });
    if (seeded.length !== adapters.length) {
      adapters = seeded;
      writeDemoConfig(model.manifest, adapters, tokens);
    }
    return summary;
  });

  printSummary(base, model.manifest.id, adapters, tokens);
  if (devProcess) devProcess.muted = false;
}

/**
 * Why the model folder is not ready to serve (null when it is): no manifest, no ONNX graph listed,
 * or files it lists are absent. Gemma 3 270M has client graphs only (no model.onnx).
 */
function whatIsMissing(modelDir) {
  const manifestPath = join(modelDir, "manifest.json");
  if (!existsSync(manifestPath)) return `${show(manifestPath)} is missing`;
  try {
    const { manifest } = readPreparedModel(modelDir);
    if (!manifest.files.some((f) => f.role === "onnx"))
      return `${show(modelDir)}/manifest.json lists no ONNX file`;
  } catch (error) {
    if (error instanceof ScriptError) return error.message;
    throw error;
  }
  return null;
}

/** `BxT` with B ≥ 1 and T ≥ 2, as prepare's --train-step takes it. */
function checkTrainShape(shape) {
  const match = /^(\d+)x(\d+)$/.exec(shape);
  if (!match || Number(match[1]) < 1 || Number(match[2]) < 2) {
    throw new ScriptError(
      `--train-shape ${JSON.stringify(shape)}: expected BxT with B >= 1, T >= 2 (e.g. 1x128)`,
    );
  }
  return shape;
}

function writeDemoConfig(manifest, adapters, tokens) {
  mkdirSync(join(demoConfigPath, ".."), { recursive: true });
  const config = {
    model: manifest.id,
    users: adapters.map(({ user, source }) => ({ id: user, source, token: tokens.users[user] })),
    note: "local demo only: written by npm start, never deployed",
  };
  writeFileSync(demoConfigPath, `${JSON.stringify(config, null, 2)}\n`);
}

function printSummary(base, model, adapters, tokens) {
  const lines = [
    "",
    `[start] ready: ${base}/`,
    `[start] demo page      ${base}/`,
    `[start] API health     ${base}/v1/health`,
    `[start] model          ${base}/v1/models/${model}`,
    "[start] demo tokens (7 days, signed with .dev.vars JWT_SECRET):",
    ...adapters.map(({ user, source }) => `  user ${user} (${source}): ${tokens.users[user]}`),
    `  admin: ${tokens.admin}`,
    `  worker: ${tokens.worker}`,
    `[start] train jobs from the page with: npm run worker -- --api ${base} --token ${tokens.worker}`,
    "[start] Ctrl-C stops wrangler dev",
  ];
  console.log(lines.join("\n"));
}

main().catch(async (error) => {
  stopping = true;
  reportFailure("start", error);
  for (const child of children) await stopGroup(child);
  process.exit(1);
});
