// `npm run publish-model -- --api https://… --token <admin JWT> [--model smollm2-135m]`:
// uploads a prepared model's manifest and files to a deployed edge API (its R2 bucket).
import { isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "./edge/args.mjs";
import { reportFailure, ScriptError, steps } from "./edge/log.mjs";
import { publishModel, r2Uploader, readPreparedModel } from "./edge/model-files.mjs";
import { root } from "./edge/paths.mjs";
import { readWranglerConfig } from "./edge/wrangler.mjs";

const USAGE = "usage: npm run publish-model -- --api <url> --token <admin JWT> [options]";
const SPEC = {
  api: {
    type: "string",
    required: true,
    help: "the edge API's origin, e.g. https://loraxs-edge.<you>.workers.dev",
  },
  token: {
    type: "string",
    required: true,
    help: "an admin token (role admin, the API's audience)",
  },
  model: { type: "string", default: "smollm2-135m", help: "model id" },
  "models-dir": { type: "string", default: "models", help: "folder holding <model>/manifest.json" },
  "large-via-wrangler": {
    type: "boolean",
    default: true,
    help: "send files over the API's body limit with `wrangler r2 object put --remote` (needs `wrangler login`)",
  },
};

async function main() {
  const options = parseArgs(process.argv.slice(2), SPEC, USAGE);
  if (!/^https?:\/\//.test(options.api)) {
    throw new ScriptError(`--api must be an http(s) origin, got ${JSON.stringify(options.api)}`);
  }
  const role = tokenRole(options.token);
  if (role !== "admin") {
    throw new ScriptError(
      `--token has role ${JSON.stringify(role)}; publishing models needs an admin token`,
    );
  }
  const modelsDir = isAbsolute(options["models-dir"])
    ? options["models-dir"]
    : resolve(root, options["models-dir"]);
  const step = steps("publish-model", 3);
  const model = await step.run(
    `read the prepared model in ${join(modelsDir, options.model)}`,
    async () => readPreparedModel(join(modelsDir, options.model)),
  );
  await step.run(`check ${options.api}/v1/health`, async () => {
    const response = await fetch(`${options.api.replace(/\/+$/, "")}/v1/health`).catch((error) => {
      throw new ScriptError(
        `${options.api} is unreachable: ${error.cause?.message ?? error.message}`,
      );
    });
    if (!response.ok) throw new ScriptError(`${options.api}/v1/health answered ${response.status}`);
  });
  const { bucketName } = readWranglerConfig();
  await step.run(`publish ${model.manifest.id} (${model.manifest.files.length} files)`, async () =>
    publishModel({
      api: options.api,
      token: options.token,
      model,
      putLarge: options["large-via-wrangler"]
        ? r2Uploader({ bucketName, modelId: model.manifest.id })
        : undefined,
      log: (line) => console.log(`[publish-model] ${line}`),
    }),
  );
}

/** The token's `role` claim, read without verifying (the API verifies it): catches a wrong token early. */
function tokenRole(token) {
  try {
    const payload = JSON.parse(
      Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8"),
    );
    return payload.role ?? null;
  } catch {
    throw new ScriptError(
      `--token is not a JWT (header.payload.signature): ${JSON.stringify(token.slice(0, 20))}…`,
    );
  }
}

main().catch((error) => reportFailure("publish-model", error));
