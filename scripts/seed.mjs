// `node scripts/seed.mjs --api http://127.0.0.1:8787`: seeds a running local edge (what `npm start`
// does after wrangler dev is up): the model's files into R2, the demo users' adapters.

import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "./edge/args.mjs";
import { listShippedAdapters, seedDemoUsers } from "./edge/demo-users.mjs";
import { parseDevVars } from "./edge/dev-vars.mjs";
import { reportFailure, ScriptError, steps } from "./edge/log.mjs";
import { publishModel, r2Uploader, readPreparedModel } from "./edge/model-files.mjs";
import { devVarsPath, root } from "./edge/paths.mjs";
import { mintDemoTokens } from "./edge/tokens.mjs";
import { readWranglerConfig } from "./edge/wrangler.mjs";

const USAGE = "usage: node scripts/seed.mjs --api http://127.0.0.1:8787 [options]";
const SPEC = {
  api: { type: "string", default: "http://127.0.0.1:8787", help: "the local edge's origin" },
  model: { type: "string", default: "smollm2-135m", help: "model id" },
  "models-dir": { type: "string", default: "models", help: "folder holding <model>/manifest.json" },
  "persist-to": {
    type: "string",
    default: ".wrangler/state",
    help: "wrangler dev's state folder (large files)",
  },
};

async function main() {
  const options = parseArgs(process.argv.slice(2), SPEC, USAGE);
  const abs = (path) => (isAbsolute(path) ? path : resolve(root, path));
  const modelDir = join(abs(options["models-dir"]), options.model);
  if (!existsSync(devVarsPath))
    throw new ScriptError(`${devVarsPath} is missing; run npm start once`);
  const secret = parseDevVars(readFileSync(devVarsPath, "utf8")).JWT_SECRET;
  if (!secret) throw new ScriptError(`${devVarsPath} has no JWT_SECRET`);
  const { audience, bucketName } = readWranglerConfig();
  const model = readPreparedModel(modelDir);
  const adapters = listShippedAdapters(modelDir);
  const tokens = await mintDemoTokens({ users: adapters.map((a) => a.user), secret, audience });
  const log = (line) => console.log(`[seed] ${line}`);
  const step = steps("seed", 2);
  await step.run(`model ${model.manifest.id}`, async () =>
    publishModel({
      api: options.api,
      token: tokens.admin,
      model,
      putLarge: r2Uploader({
        bucketName,
        modelId: model.manifest.id,
        persistTo: abs(options["persist-to"]),
      }),
      log,
    }),
  );
  await step.run(`demo users (${adapters.length} shipped adapters)`, async () => {
    const { summary } = await seedDemoUsers({
      api: options.api,
      model: model.manifest.id,
      adapters,
      tokens: tokens.users,
      log,
    });
    return summary;
  });
}

main().catch((error) => reportFailure("seed", error));
