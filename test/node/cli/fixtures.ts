// A prepared model folder built in plain sight: a manifest (docs/contracts.md) and a factors
// file with random `down` and orthonormal `up`, the shapes prepare writes.

import { createHash } from "node:crypto";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bufferIo } from "../../../src/cli/io.ts";
import { main } from "../../../src/cli/main.ts";
import { encodeSafetensorsF32 } from "../../../src/cli/safetensors.ts";
import { encodeAdapter } from "../../../src/format/index.ts";
import { syntheticManifest } from "../../../src/manifest/synthetic.ts";
import { mulberry32 } from "../../fixtures/mulberry32.ts";

/** A small deterministic generator (mulberry32) so every run builds the same files. */
export function rng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() - 0.5;
}

export interface TestModule {
  name: string;
  in: number;
  out: number;
  down: Float64Array; // [r, in]
  up: Float64Array; // [out, r], orthonormal columns
}

export interface TestModel {
  dir: string;
  manifestPath: string;
  factorsPath: string;
  digest: string;
  id: string;
  rank: number;
  modules: TestModule[];
}

/** Columns of a random [rows, cols] matrix made orthonormal (Gram–Schmidt). */
function orthonormalColumns(rows: number, cols: number, next: () => number): Float64Array {
  const q = new Float64Array(rows * cols).map(() => next());
  for (let j = 0; j < cols; j++) {
    for (let k = 0; k < j; k++) {
      let dot = 0;
      for (let i = 0; i < rows; i++)
        dot += (q[i * cols + j] as number) * (q[i * cols + k] as number);
      for (let i = 0; i < rows; i++)
        q[i * cols + j] = (q[i * cols + j] as number) - dot * (q[i * cols + k] as number);
    }
    let norm = 0;
    for (let i = 0; i < rows; i++) norm += (q[i * cols + j] as number) ** 2;
    for (let i = 0; i < rows; i++) q[i * cols + j] = (q[i * cols + j] as number) / Math.sqrt(norm);
  }
  return q;
}

export async function makeModel(
  options: {
    id?: string;
    rank?: number;
    seed?: number;
    dir?: string;
    width?: number;
    family?: "decoder" | "encoder";
  } = {},
): Promise<TestModel> {
  const id = options.id ?? "tiny-test";
  const rank = options.rank ?? 4;
  const next = rng(options.seed ?? 1);
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "loraxs-cli-")));
  await mkdir(dir, { recursive: true });
  const w = options.width ?? 16; // hidden size: the `in` of every module
  const shapes = [
    { name: "model.layers.0.self_attn.q_proj", in: w, out: w },
    { name: "model.layers.0.self_attn.v_proj", in: w, out: w / 2 },
    { name: "model.layers.1.self_attn.q_proj", in: w, out: w },
    { name: "model.layers.1.self_attn.v_proj", in: w, out: w / 2 },
  ];
  const modules: TestModule[] = shapes.map((s) => ({
    ...s,
    down: new Float64Array(rank * s.in).map(() => next() * 4),
    up: orthonormalColumns(s.out, rank, next),
  }));
  const factorBytes = encodeSafetensorsF32(
    modules.flatMap((m) => [
      { name: `${m.name}.down`, shape: [rank, m.in], values: m.down },
      { name: `${m.name}.up`, shape: [m.out, rank], values: m.up },
    ]),
    {
      format: "loraxs-factors",
      model: id,
      rank: String(rank),
      modules: String(modules.length),
      order: modules.map((m) => m.name).join(","),
      svd: "exact",
      seed: "0",
    },
  );
  // The file stores float32: keep the rounded values so the tests compute with what was stored.
  for (const m of modules) {
    m.down = Float64Array.from(Float32Array.from(m.down));
    m.up = Float64Array.from(Float32Array.from(m.up));
  }
  const factorsPath = join(dir, "factors.safetensors");
  await writeFile(factorsPath, factorBytes);
  const digest = `sha256:${createHash("sha256").update(factorBytes).digest("hex")}`;
  const manifest = syntheticManifest({
    id,
    family: options.family,
    modules: shapes,
    rank,
    factors: { sha256: digest, bytes: factorBytes.length },
    config: {
      hidden_size: w,
      num_layers: 2,
      num_attention_heads: 2,
      num_kv_heads: 1,
      head_dim: 8,
      vocab_size: 32,
      max_position_embeddings: 64,
    },
    tokenizer: { files: [], chat_template: false },
  });
  const manifestPath = join(dir, "manifest.json");
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  return { dir, manifestPath, factorsPath, digest, id, rank, modules };
}

/** A random R for the model, [M, r, r]. */
export function randomR(model: TestModel, seed = 7, scale = 0.1): Float32Array {
  const next = rng(seed);
  return new Float32Array(model.modules.length * model.rank * model.rank).map(() => next() * scale);
}

/** Writes an adapter for `model` and returns its path. */
export async function writeAdapter(
  model: TestModel,
  name: string,
  R: Float32Array,
  dtype: "F16" | "F32" = "F32",
): Promise<string> {
  const bytes = encodeAdapter(
    {
      model: model.id,
      factors: model.digest,
      rank: model.rank,
      modules: model.modules.length,
      R,
      metadata: { source: "worker", steps: "10" },
    },
    { dtype },
  );
  const path = join(model.dir, name);
  await writeFile(path, bytes);
  return path;
}

/** Runs the CLI in-process; returns the exit code and what it printed. */
export async function cli(
  argv: string[],
  env: Record<string, string | undefined> = {},
  cwd?: string,
) {
  const io = bufferIo(env, cwd);
  const code = await main(argv, io);
  return { code, stdout: io.out.join(""), stderr: io.err.join("") };
}
