// Demo users: one per shipped adapter (models/<id>/adapters/<user>.safetensors), or random ones.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { EdgeApi } from "../../src/client/api/index.ts";
import { ApiError } from "../../src/client/errors.ts";
import { encodeAdapter } from "../../src/format/index.ts";
import { formatBytes, ScriptError } from "./log.mjs";

/** The API's user-id rule (src/api/ids.ts USER_ID), checked here so a bad file name fails early. */
const USER_ID = /^[A-Za-z0-9._@|:+=-]{1,128}$/;

/** Random demo adapters: two users, so the page has someone to switch to. */
export const RANDOM_USERS = ["random-a", "random-b"];
/** σ of R's entries: ‖R‖ ≈ 2σ√r ≈ 0.4 at r = 16, enough to change greedy tokens, not to drown the base weights. */
const RANDOM_SIGMA = 0.1;

/** Shipped adapters of a prepared model folder, one per user, sorted by user id. */
export function listShippedAdapters(modelDir) {
  const dir = join(modelDir, "adapters");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.endsWith(".safetensors"))
    .sort()
    .map((name) => {
      const user = basename(name, ".safetensors");
      if (!USER_ID.test(user)) {
        throw new ScriptError(
          `${join(dir, name)}: user id ${JSON.stringify(user)} does not match ${USER_ID.source}`,
        );
      }
      return { user, path: join(dir, name), source: "shipped" };
    });
}

/** Deterministic N(0, σ) values (Box–Muller over a 32-bit LCG) so reruns write the same files. */
function gaussian(count, seed, sigma) {
  const out = new Float32Array(count);
  let state = seed >>> 0;
  const uniform = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state + 1) / 4294967297;
  };
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const theta = 2 * Math.PI * uniform();
    out[i] = sigma * r * Math.cos(theta);
    if (i + 1 < count) out[i + 1] = sigma * r * Math.sin(theta);
  }
  return out;
}

/**
 * Writes untrained adapters (random R) for `manifest` into `outDir`, one per RANDOM_USERS entry:
 * a stand-in until trained ones are shipped; the page labels them as random.
 */
export function writeRandomAdapters(manifest, outDir, sigma = RANDOM_SIGMA) {
  mkdirSync(outDir, { recursive: true });
  const [modules, rank] = [manifest.modules.length, manifest.rank];
  return RANDOM_USERS.map((user, index) => {
    const bytes = encodeAdapter({
      model: manifest.id,
      factors: manifest.factors.sha256,
      rank,
      modules,
      R: gaussian(modules * rank * rank, 1 + index, sigma),
      metadata: {
        source: "import",
        note: `random R (sigma ${sigma}), untrained: a local demo stand-in`,
      },
    });
    const path = join(outDir, `${user}.safetensors`);
    writeFileSync(path, bytes);
    return { user, path, source: "random" };
  });
}

/**
 * PUTs each demo adapter as its user unless the API's current ETag is already its sha256. An
 * adapter the API refuses (422: say, trained against other factors) is reported and left out;
 * returns the users that have their adapter and a one-line summary.
 */
export async function seedDemoUsers({ api, model, adapters, tokens, log = console.log }) {
  let uploaded = 0;
  const seeded = [];
  for (const entry of adapters) {
    const { user, path } = entry;
    const bytes = readFileSync(path);
    const sha = createHash("sha256").update(bytes).digest("hex");
    const token = tokens[user];
    const edge = new EdgeApi({ api, token });
    const current = await edge.adapterEtag(model, user);
    if (current === sha) {
      log(`  = ${user}: adapter ${sha.slice(0, 12)}… (${formatBytes(bytes.length)}) is current`);
      seeded.push(entry);
      continue;
    }
    let answer;
    try {
      answer = await edge.putAdapter(model, user, bytes);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 422)) throw error;
      log(`  ! ${user}: ${path} refused by the API (${error.code}: ${error.detail}); left out`);
      continue;
    }
    uploaded += 1;
    seeded.push(entry);
    log(
      `  + ${user}: version ${answer.version}, ${formatBytes(bytes.length)}, etag ${String(answer.etag).slice(0, 12)}…`,
    );
  }
  const refused = adapters.length - seeded.length;
  const summary = `${seeded.length} user(s), ${uploaded} adapter(s) uploaded${refused ? `, ${refused} refused` : ""}`;
  return { seeded, summary };
}
