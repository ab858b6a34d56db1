import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../../src/cli/errors.ts";
import { encodeSafetensorsF32, readSafetensors, toFloat64 } from "../../../src/cli/safetensors.ts";
import { decodeAdapter } from "../../../src/format/index.ts";
import { cli, makeModel, randomR, rng, type TestModel, writeAdapter } from "./fixtures.ts";

let model: TestModel;
let R: Float32Array;
let adapter: string;

/** C = A · B for row-major float64 matrices. */
function mul(
  A: ArrayLike<number>,
  B: ArrayLike<number>,
  n: number,
  k: number,
  m: number,
): Float64Array {
  const C = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < k; p++)
      for (let j = 0; j < m; j++)
        C[i * m + j] =
          (C[i * m + j] as number) + (A[i * k + p] as number) * (B[p * m + j] as number);
  return C;
}
const t = (A: ArrayLike<number>, rows: number, cols: number) => {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) out[j * rows + i] = A[i * cols + j] as number;
  return out;
};

beforeAll(async () => {
  model = await makeModel({ seed: 3 });
  R = randomR(model, 11, 0.2);
  adapter = await writeAdapter(model, "user.safetensors", R, "F32");
});

/** `loraxs import-peft --peft <dir> --model <manifest> --out <file> [extra…]`. */
function importPeft(peft: string, manifest: string, out: string, ...extra: string[]) {
  return cli(["import-peft", "--peft", peft, "--model", manifest, "--out", out, ...extra]);
}

function exportPeft(adapter: string, manifest: string, out: string, ...extra: string[]) {
  return cli(["export-peft", "--adapter", adapter, "--model", manifest, "--out", out, ...extra]);
}

describe("loraxs export-peft", () => {
  it("writes lora_A = R·down, lora_B = up under PEFT's names, with alpha = r", async () => {
    const out = join(model.dir, "peft-exact");
    const r = await exportPeft(adapter, model.manifestPath, out);
    expect(r.code, r.stderr).toBe(EXIT.ok);
    const config = JSON.parse(await readFile(join(out, "adapter_config.json"), "utf8"));
    expect(config).toMatchObject({
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      r: 4,
      lora_alpha: 4,
      target_modules: ["q_proj", "v_proj"],
      bias: "none",
      use_rslora: false,
    });
    const file = readSafetensors(
      new Uint8Array(await readFile(join(out, "adapter_model.safetensors"))),
      "peft",
    );
    expect(file.tensors.size).toBe(2 * model.modules.length);
    const rr = model.rank * model.rank;
    for (const [i, m] of model.modules.entries()) {
      const A = file.tensors.get(`base_model.model.${m.name}.lora_A.weight`);
      const B = file.tensors.get(`base_model.model.${m.name}.lora_B.weight`);
      expect(A?.shape).toEqual([model.rank, m.in]);
      expect(B?.shape).toEqual([m.out, model.rank]);
      const want = mul(R.subarray(i * rr, (i + 1) * rr), m.down, model.rank, model.rank, m.in);
      const got = toFloat64(A as NonNullable<typeof A>);
      for (let j = 0; j < want.length; j++) expect(got[j]).toBeCloseTo(want[j] as number, 5);
      expect(Array.from(toFloat64(B as NonNullable<typeof B>))).toEqual(Array.from(m.up));
    }
  });

  it("refuses to overwrite an existing export without --force (exit 2)", async () => {
    const out = join(model.dir, "peft-twice");
    expect((await exportPeft(adapter, model.manifestPath, out)).code).toBe(EXIT.ok);
    const again = await exportPeft(adapter, model.manifestPath, out);
    expect(again.code).toBe(EXIT.usage);
    expect(again.stderr).toContain("pass --force");
    expect((await exportPeft(adapter, model.manifestPath, out, "--force")).code).toBe(EXIT.ok);
  });

  it("rejects an adapter made for another model (exit 1, model_mismatch)", async () => {
    const other = await makeModel({ id: "other-model", seed: 5 });
    const r = await exportPeft(adapter, other.manifestPath, join(other.dir, "x"));
    expect(r.code).toBe(EXIT.invalid);
    expect(r.stderr).toContain("model_mismatch");
    expect(r.stderr).toContain("other-model");
  });

  it("rejects a factors file whose digest is not the manifest's (exit 1)", async () => {
    const copy = await makeModel({ seed: 3 });
    const bytes = new Uint8Array(await readFile(copy.factorsPath));
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] as number) ^ 1; // one bit of the last float
    await writeFile(copy.factorsPath, bytes);
    const a = await writeAdapter(copy, "a.safetensors", R);
    const r = await exportPeft(a, copy.manifestPath, join(copy.dir, "x"));
    expect(r.code).toBe(EXIT.invalid);
    expect(r.stderr).toContain(`factors file ${copy.factorsPath} has digest sha256:`);
    expect(r.stderr).toContain(`names ${copy.digest}`);
  });
});

describe("loraxs import-peft", () => {
  it("round-trips an exported adapter: residual ≈ 0 and the same R", async () => {
    const out = join(model.dir, "peft-rt");
    await exportPeft(adapter, model.manifestPath, out);
    const back = join(model.dir, "back.safetensors");
    const r = await importPeft(out, model.manifestPath, back, "--dtype", "f32", "--json");
    expect(r.code, r.stderr).toBe(EXIT.ok);
    const report = JSON.parse(r.stdout);
    expect(report.residual).toBeLessThan(1e-6);
    expect(report.modules).toHaveLength(4);
    for (const m of report.modules) expect(m.residual).toBeLessThan(1e-6);
    const imported = decodeAdapter(new Uint8Array(await readFile(back)), {
      model: model.id,
      factors: model.digest,
      rank: 4,
      modules: 4,
    });
    expect(imported.metadata.source).toBe("import");
    for (let i = 0; i < R.length; i++) expect(imported.R[i]).toBeCloseTo(R[i] as number, 5);
  });

  it("folds lora_alpha / r into R (a LoRA with alpha = 2r and half of lora_A gives the same R)", async () => {
    const out = join(model.dir, "peft-alpha");
    await exportPeft(adapter, model.manifestPath, out);
    const config = JSON.parse(await readFile(join(out, "adapter_config.json"), "utf8"));
    config.lora_alpha = 2 * config.r;
    await writeFile(join(out, "adapter_config.json"), JSON.stringify(config));
    const file = readSafetensors(
      new Uint8Array(await readFile(join(out, "adapter_model.safetensors"))),
      "peft",
    );
    const halved = [...file.tensors.values()].map((x) => ({
      name: x.name,
      shape: x.shape,
      values: toFloat64(x).map((v) => (x.name.includes("lora_A") ? v / 2 : v)),
    }));
    await writeFile(join(out, "adapter_model.safetensors"), encodeSafetensorsF32(halved, {}));
    const back = join(model.dir, "alpha.safetensors");
    const r = await importPeft(out, model.manifestPath, back, "--dtype", "f32", "--json");
    expect(r.code, r.stderr).toBe(EXIT.ok);
    expect(JSON.parse(r.stdout).residual).toBeLessThan(1e-6);
    const imported = decodeAdapter(new Uint8Array(await readFile(back)));
    for (let i = 0; i < R.length; i++) expect(imported.R[i]).toBeCloseTo(R[i] as number, 5);
  });

  it("projects a random LoRA: reports residual > 0, and the residual is orthogonal to the subspace", async () => {
    const next = rng(21);
    const k = 3;
    const dir = join(model.dir, "peft-random");
    const tensors = model.modules.flatMap((m) => [
      {
        name: `base_model.model.${m.name}.lora_A.weight`,
        shape: [k, m.in],
        values: new Float64Array(k * m.in).map(() => next()),
      },
      {
        name: `base_model.model.${m.name}.lora_B.weight`,
        shape: [m.out, k],
        values: new Float64Array(m.out * k).map(() => next()),
      },
    ]);
    const { mkdir } = await import("node:fs/promises");
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, "adapter_model.safetensors"),
      encodeSafetensorsF32(tensors, { format: "pt" }),
    );
    await writeFile(
      join(dir, "adapter_config.json"),
      JSON.stringify({
        peft_type: "LORA",
        r: k,
        lora_alpha: 6,
        target_modules: ["q_proj", "v_proj"],
        bias: "none",
      }),
    );
    const back = join(model.dir, "random.safetensors");
    const r = await importPeft(dir, model.manifestPath, back, "--dtype", "f32", "--json");
    expect(r.code, r.stderr).toBe(EXIT.ok);
    const report = JSON.parse(r.stdout);
    expect(report.residual).toBeGreaterThan(0.1);
    expect(report.residual).toBeLessThan(1);
    // Least squares: upᵀ (ΔW − up R down) downᵀ = 0 for the optimal R.
    const imported = decodeAdapter(new Uint8Array(await readFile(back)));
    const r4 = model.rank;
    for (const [i, m] of model.modules.entries()) {
      const A = tensors[2 * i]?.values as Float64Array;
      const B = tensors[2 * i + 1]?.values as Float64Array;
      const dW = mul(B, A, m.out, k, m.in).map((x) => x * (6 / k));
      const URD = mul(
        mul(m.up, imported.R.subarray(i * r4 * r4, (i + 1) * r4 * r4), m.out, r4, r4),
        m.down,
        m.out,
        r4,
        m.in,
      );
      const E = dW.map((x, j) => x - (URD[j] as number));
      const G = mul(mul(t(m.up, m.out, r4), E, r4, m.out, m.in), t(m.down, r4, m.in), r4, m.in, r4);
      const scale = Math.max(...dW.map(Math.abs)) * 16 * 16;
      for (const g of G) expect(Math.abs(g) / scale).toBeLessThan(1e-6);
      let e2 = 0;
      let d2 = 0;
      for (let j = 0; j < E.length; j++) {
        e2 += (E[j] as number) ** 2;
        d2 += (dW[j] as number) ** 2;
      }
      expect(report.modules[i].residual).toBeCloseTo(Math.sqrt(e2 / d2), 5);
    }
    const text = await importPeft(dir, model.manifestPath, back);
    expect(text.stdout).toContain("total residual");
    const strict = await importPeft(dir, model.manifestPath, back, "--max-residual", "0.01");
    expect(strict.code).toBe(EXIT.invalid);
    expect(strict.stderr).toContain("exceeds --max-residual 0.01");
  });

  it("counts a LoRA module the model does not adapt as fully lost", async () => {
    const out = join(model.dir, "peft-extra");
    await exportPeft(adapter, model.manifestPath, out);
    const file = readSafetensors(
      new Uint8Array(await readFile(join(out, "adapter_model.safetensors"))),
      "peft",
    );
    const tensors = [...file.tensors.values()].map((x) => ({
      name: x.name,
      shape: x.shape,
      values: toFloat64(x),
    }));
    tensors.push({
      name: "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight",
      shape: [4, 16],
      values: new Float64Array(64).fill(0.5),
    });
    tensors.push({
      name: "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight",
      shape: [32, 4],
      values: new Float64Array(128).fill(0.5),
    });
    await writeFile(join(out, "adapter_model.safetensors"), encodeSafetensorsF32(tensors, {}));
    const r = await importPeft(
      out,
      model.manifestPath,
      join(model.dir, "extra.safetensors"),
      "--json",
    );
    expect(r.code, r.stderr).toBe(EXIT.ok);
    const report = JSON.parse(r.stdout);
    expect(report.dropped).toEqual([
      {
        module: "model.layers.0.mlp.up_proj",
        norm: expect.closeTo(0.5 * 0.5 * 4 * Math.sqrt(16 * 32), 6),
      },
    ]);
    expect(report.residual).toBeGreaterThan(0.5);
  });

  it("rejects DoRA, a missing folder and mismatched shapes with exit 1", async () => {
    const out = join(model.dir, "peft-bad");
    await exportPeft(adapter, model.manifestPath, out);
    const config = JSON.parse(await readFile(join(out, "adapter_config.json"), "utf8"));
    await writeFile(
      join(out, "adapter_config.json"),
      JSON.stringify({ ...config, use_dora: true }),
    );
    const dora = await importPeft(out, model.manifestPath, join(model.dir, "d.safetensors"));
    expect(dora.code).toBe(EXIT.invalid);
    expect(dora.stderr).toContain("use_dora is true");
    const missing = await importPeft(
      join(model.dir, "nope"),
      model.manifestPath,
      join(model.dir, "d.safetensors"),
    );
    expect(missing.code).toBe(EXIT.invalid);
    expect(missing.stderr).toContain(
      `cannot read PEFT config ${join(model.dir, "nope", "adapter_config.json")}: ENOENT`,
    );
    const wide = await makeModel({ id: "tiny-test", seed: 3, width: 24 });
    await writeFile(join(out, "adapter_config.json"), JSON.stringify(config));
    const shapes = await importPeft(out, wide.manifestPath, join(wide.dir, "d.safetensors"));
    expect(shapes.code).toBe(EXIT.invalid);
    expect(shapes.stderr).toContain(
      "model.layers.0.self_attn.q_proj has lora_A [4, 16] and lora_B [16, 4]; the model's module is 24 × 24",
    );
  });
});

describe("an encoder adapter with a classification head", () => {
  it("inspect shows the head; export-peft writes it beside the LoRA and says so", async () => {
    const enc = await makeModel({ id: "tiny-enc", family: "encoder", seed: 8 });
    const { encodeAdapter } = await import("../../../src/format/index.ts");
    const head = {
      classes: 2,
      hidden: 16,
      labels: ["ham", "spam"],
      weight: new Float32Array(32).map((_, i) => i / 32),
      bias: Float32Array.from([0.5, -0.5]),
    };
    const bytes = encodeAdapter(
      { model: enc.id, factors: enc.digest, rank: 4, modules: 4, R: randomR(enc), head },
      { dtype: "F32" },
    );
    const path = join(enc.dir, "clf.safetensors");
    await writeFile(path, bytes);
    const shown = await cli(["inspect", path, "--manifest", enc.manifestPath, "--json"]);
    expect(shown.code, shown.stdout).toBe(EXIT.ok);
    const report = JSON.parse(shown.stdout);
    expect(report.labels).toEqual(["ham", "spam"]);
    expect(report.stats["head.bias"]).toMatchObject({ min: -0.5, max: 0.5, mean: 0 });
    expect(report.manifest.checks.at(-1)).toEqual({
      field: "head hidden",
      adapter: 16,
      manifest: 16,
      ok: true,
    });
    const out = join(enc.dir, "peft");
    const r = await exportPeft(path, enc.manifestPath, out);
    expect(r.code, r.stderr).toBe(EXIT.ok);
    expect(r.stderr).toContain("classification head is not part of a LoRA");
    expect(JSON.parse(await readFile(join(out, "adapter_config.json"), "utf8")).task_type).toBe(
      "FEATURE_EXTRACTION",
    );
    const saved = readSafetensors(
      new Uint8Array(await readFile(join(out, "loraxs_head.safetensors"))),
      "head",
    );
    expect(saved.metadata.labels).toBe('["ham","spam"]');
    expect(
      Array.from(
        toFloat64(
          saved.tensors.get("head.weight") as NonNullable<ReturnType<typeof saved.tensors.get>>,
        ),
      ),
    ).toEqual(Array.from(head.weight));
  });
});
