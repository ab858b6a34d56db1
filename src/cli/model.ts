// A prepared model as the CLI needs it: the manifest (docs/contracts.md) and the folder it sits in.

import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import type { AdapterExpectations } from "../format/index.ts";
import { InvalidInputError } from "./errors.ts";

export interface ManifestModule {
  name: string;
  in: number;
  out: number;
}

/** The manifest fields the CLI reads. */
export interface ModelManifest {
  id: string;
  family: "decoder" | "encoder";
  architecture: string;
  source: Record<string, unknown>;
  rank: number;
  targets?: string;
  modules: ManifestModule[];
  factors: { file: string; sha256: string };
  config?: { hidden_size?: number };
}

export interface LoadedModel {
  manifest: ModelManifest;
  /** Absolute path of manifest.json. */
  path: string;
  /** The folder holding manifest.json, factors.safetensors and the rest. */
  dir: string;
}

/** Reads and checks a manifest.json; errors name the file and the offending field. */
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
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new InvalidInputError(`manifest ${full} is not JSON: ${(error as Error).message}`);
  }
  return { manifest: checkManifest(raw, full), path: full, dir: dirname(full) };
}

function checkManifest(raw: unknown, path: string): ModelManifest {
  const bad = (field: string, value: unknown, want: string): never => {
    throw new InvalidInputError(
      `manifest ${path}: ${field} is ${JSON.stringify(value)}; expected ${want}`,
    );
  };
  const m = raw as Record<string, unknown>;
  if (typeof m !== "object" || m === null) bad("the document", m, "an object");
  if (typeof m.id !== "string" || m.id === "") bad("id", m.id, "a model id");
  if (m.family !== "decoder" && m.family !== "encoder")
    bad("family", m.family, '"decoder" or "encoder"');
  if (!Number.isInteger(m.rank) || (m.rank as number) < 1)
    bad("rank", m.rank, "a positive integer");
  if (!Array.isArray(m.modules) || m.modules.length === 0)
    bad("modules", m.modules, "a non-empty list");
  for (const [i, mod] of (m.modules as ManifestModule[]).entries()) {
    if (typeof mod?.name !== "string" || !Number.isInteger(mod.in) || !Number.isInteger(mod.out)) {
      bad(`modules[${i}]`, mod, '{"name", "in", "out"}');
    }
  }
  const f = m.factors as { file?: unknown; sha256?: unknown } | undefined;
  if (
    typeof f?.file !== "string" ||
    typeof f.sha256 !== "string" ||
    !/^sha256:[0-9a-f]{64}$/.test(f.sha256)
  ) {
    bad("factors", f, '{"file", "sha256": "sha256:<64 hex>"}');
  }
  return m as unknown as ModelManifest;
}

/** What an adapter for this model must match (the format checks each field). */
export function expectationsOf(manifest: ModelManifest): AdapterExpectations {
  const expect: AdapterExpectations = {
    model: manifest.id,
    factors: manifest.factors.sha256,
    rank: manifest.rank,
    modules: manifest.modules.length,
  };
  const hidden = manifest.config?.hidden_size;
  if (manifest.family === "encoder" && hidden !== undefined) expect.hidden = hidden;
  return expect;
}
