// A prepared model as the CLI needs it: the manifest (docs/manifest.md, validated by
// src/manifest) and the folder it sits in.

import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { type Manifest, ManifestError, parseManifest } from "../manifest/index.ts";
import { InvalidInputError } from "./errors.ts";

export interface LoadedModel {
  manifest: Manifest;
  /** Absolute path of manifest.json. */
  path: string;
  /** The folder holding manifest.json, factors.safetensors and the rest. */
  dir: string;
}

/** Reads and validates a manifest.json; errors name the file and every offending field. */
export async function loadModel(path: string, cwd: string): Promise<LoadedModel> {
  const full = resolve(cwd, path);
  let text: string;
  try {
    text = await readFile(full, "utf8");
  } catch (error) {
    throw new InvalidInputError(
      `cannot read manifest ${full}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      "pass the manifest.json of a prepared model (npm run prepare-model -- --preset tiny-llama --out DIR)",
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InvalidInputError(`manifest ${full} is not JSON: ${(error as Error).message}`);
  }
  try {
    return { manifest: parseManifest(json), path: full, dir: dirname(full) };
  } catch (error) {
    if (error instanceof ManifestError) {
      throw new InvalidInputError(
        `manifest ${full}: ${error.message}`,
        "docs/manifest.md lists every field",
      );
    }
    throw error;
  }
}
