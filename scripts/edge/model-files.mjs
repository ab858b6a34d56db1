// A prepared model folder (models/<id>/): its manifest, its files' digests, and their upload to the API.
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { EdgeApi } from "../../src/client/api/index.ts";
import { r2ModelFile } from "../../src/shared/keys.ts";
import { MAX_MODEL_FILE_BYTES } from "../../src/shared/limits.ts";
import { formatBytes, ScriptError } from "./log.mjs";
import { putR2Object } from "./wrangler.mjs";

/**
 * publishModel's `putLarge` for files over the API's body limit: `wrangler r2 object put` into the
 * model's R2 folder, the local state in `persistTo` when given, else the account's bucket.
 */
export function r2Uploader({ bucketName, modelId, persistTo }) {
  return (file, path) =>
    putR2Object({ bucketName, key: r2ModelFile(modelId, file.name), path, persistTo });
}

/** Reads `dir/manifest.json` and checks that every file it lists is there with the listed size. */
export function readPreparedModel(dir) {
  const manifestPath = join(dir, "manifest.json");
  if (!existsSync(manifestPath)) {
    throw new ScriptError(`${manifestPath} is missing; run \`npm run prepare-model\` first`);
  }
  const manifestText = readFileSync(manifestPath, "utf8");
  const manifest = JSON.parse(manifestText);
  if (!Array.isArray(manifest.files) || manifest.files.length === 0) {
    throw new ScriptError(`${manifestPath} lists no files`);
  }
  for (const file of manifest.files) {
    const path = join(dir, file.name);
    if (!existsSync(path)) throw new ScriptError(`${path} is listed in the manifest but missing`);
    const bytes = statSync(path).size;
    if (bytes !== file.bytes) {
      throw new ScriptError(`${path} has ${bytes} bytes; the manifest says ${file.bytes}`);
    }
  }
  return { dir, manifest, manifestText };
}

/** `sha256:<hex>` of a file, streamed. */
export async function sha256File(path) {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return `sha256:${hash.digest("hex")}`;
}

/**
 * Uploads a prepared model through the admin routes: the manifest first (`PUT …/manifest`; the
 * API checks each file against its sha256), then each listed file (`PUT …/files/:name`),
 * skipping files the API already serves at the size and sha256 it published before. Files over
 * the API's body limit go through `putLarge(file, path)` (wrangler r2 object put) when given.
 */
export async function publishModel({ api, token, model, putLarge, log = console.log }) {
  const { dir, manifest, manifestText } = model;
  const id = manifest.id;
  const edge = new EdgeApi({ api, token });
  const before = await edge.getManifest(id);
  const published = new Map((before?.files ?? []).map((file) => [file.name, file.sha256]));
  const manifestChanged = before === null || JSON.stringify(before) !== JSON.stringify(manifest);
  if (manifestChanged) {
    await edge.putManifest(id, manifestText);
    log(`  + manifest.json ${before === null ? "published" : "replaced"}`);
  } else {
    log("  = manifest.json unchanged");
  }
  let uploaded = 0;
  let skipped = 0;
  for (const file of manifest.files) {
    const path = join(dir, file.name);
    const digest = await sha256File(path);
    if (digest !== file.sha256) {
      throw new ScriptError(
        `${path} has ${digest}; the manifest says ${file.sha256} (re-run prepare)`,
      );
    }
    const served = await edge.headFile(id, file.name);
    if (served && served.bytes === file.bytes && published.get(file.name) === digest) {
      skipped += 1;
      log(`  = ${file.name} (${formatBytes(file.bytes)}) already there`);
      continue;
    }
    const started = Date.now();
    let how = "admin API";
    if (file.bytes > MAX_MODEL_FILE_BYTES) {
      if (!putLarge) {
        throw new ScriptError(
          `${file.name} has ${file.bytes} bytes, over the API's ${MAX_MODEL_FILE_BYTES}-byte body limit, and no direct R2 upload was configured`,
        );
      }
      how = await putLarge(file, path);
    } else {
      await edge.putFile(id, file.name, await readFile(path));
    }
    uploaded += 1;
    log(
      `  + ${file.name} (${formatBytes(file.bytes)}) via ${how} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  }
  return `${uploaded} file(s) uploaded, ${skipped} already there, manifest ${manifestChanged ? "published" : "unchanged"}`;
}
