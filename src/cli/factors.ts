// The frozen factor set of a model (docs/contracts.md, "Factors file"), checked against its
// manifest: digest, module order, shapes.

import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { sha256Digest } from "../format/index.ts";
import { InvalidInputError } from "./errors.ts";
import { type Matrix, matrix } from "./linalg.ts";
import type { LoadedModel } from "./model.ts";
import { readSafetensors, toFloat64 } from "./safetensors.ts";

export const FACTORS_FORMAT = "loraxs-factors";

export interface ModuleFactors {
  name: string;
  /** `r × in`. */
  down: Matrix;
  /** `out × r`. */
  up: Matrix;
}

export interface FactorSet {
  path: string;
  digest: string;
  rank: number;
  /** In manifest order (the order of R's first axis). */
  modules: ModuleFactors[];
  metadata: Record<string, string>;
}

/** Reads `<model dir>/<factors.file>`; its sha256 must be the manifest's. */
export async function loadFactors(model: LoadedModel): Promise<FactorSet> {
  const { manifest } = model;
  const path = resolve(model.dir, manifest.factors.file);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (error) {
    throw new InvalidInputError(
      `cannot read the factors file ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      "the factors file sits next to manifest.json; re-run prepare to regenerate it",
    );
  }
  const digest = await sha256Digest(bytes);
  if (digest !== manifest.factors.sha256) {
    throw new InvalidInputError(
      `factors file ${path} has digest ${digest}; manifest ${model.path} names ${manifest.factors.sha256}`,
      "the factors were regenerated after the manifest was written (or the reverse): use the matching pair",
    );
  }
  const file = readSafetensors(bytes, path);
  const bad = (why: string): never => {
    throw new InvalidInputError(`factors file ${path}: ${why}`);
  };
  if (file.metadata.format !== FACTORS_FORMAT) {
    bad(
      `metadata format is ${JSON.stringify(file.metadata.format)}; expected ${JSON.stringify(FACTORS_FORMAT)}`,
    );
  }
  const names = manifest.modules.map((m) => m.name);
  const order = file.metadata.order;
  if (order !== undefined && order !== names.join(",")) {
    bad(
      `module order ${JSON.stringify(order.slice(0, 200))} differs from the manifest's ${JSON.stringify(names.join(",").slice(0, 200))}`,
    );
  }
  const r = manifest.rank;
  const modules = manifest.modules.map((m): ModuleFactors => {
    const tensor = (suffix: string, rows: number, cols: number): Matrix => {
      const t = file.tensors.get(`${m.name}.${suffix}`);
      if (!t) bad(`tensor ${m.name}.${suffix} is missing`);
      const shape = (t as NonNullable<typeof t>).shape;
      if (shape.length !== 2 || shape[0] !== rows || shape[1] !== cols) {
        bad(
          `tensor ${m.name}.${suffix} has shape ${JSON.stringify(shape)}; the manifest implies [${rows}, ${cols}]`,
        );
      }
      return matrix(rows, cols, toFloat64(t as NonNullable<typeof t>));
    };
    return { name: m.name, down: tensor("down", r, m.in), up: tensor("up", m.out, r) };
  });
  return { path, digest, rank: r, modules, metadata: file.metadata };
}
