import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../../src/cli/errors.ts";
import { cli, makeModel, type TestModel, writeAdapter } from "./fixtures.ts";

let model: TestModel;
let R: Float32Array;
let adapter: string;

beforeAll(async () => {
  model = await makeModel();
  // Known values: module 0 is all zeros, the rest count up, so min/max/mean/zeros are known.
  const rr = model.rank * model.rank;
  R = new Float32Array(model.modules.length * rr);
  for (let i = rr; i < R.length; i++) R[i] = (i - rr) / 16 - 1; // -1 .. 1.9375
  adapter = await writeAdapter(model, "known.safetensors", R, "F32");
});

describe("loraxs inspect", () => {
  it("reports header, shapes, dtype, statistics and metadata of a valid adapter (exit 0)", async () => {
    const r = await cli(["inspect", adapter, "--json"]);
    expect(r.code).toBe(EXIT.ok);
    const report = JSON.parse(r.stdout);
    expect(report.valid).toBe(true);
    expect(report.model).toBe(model.id);
    expect(report.factors).toBe(model.digest);
    expect(report.dtype).toBe("F32");
    expect(report.tensors).toEqual([{ name: "R", dtype: "F32", shape: [4, 4, 4], bytes: 4 * 64 }]);
    const s = report.stats.R;
    expect(s.count).toBe(64);
    expect(s.min).toBe(-1);
    expect(s.max).toBe(1.9375);
    expect(s.zeros).toBeCloseTo(17 / 64, 12); // module 0 (16) plus the value (i - 16)/16 - 1 = 0 at i = 32
    const values = Array.from(R);
    const mean = values.reduce((a, b) => a + b, 0) / 64;
    expect(s.mean).toBeCloseTo(mean, 12);
    expect(s.std).toBeCloseTo(Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / 64), 12);
    expect(report.module_norms[0].norm).toBe(0);
    expect(report.metadata.source).toBe("worker");
    expect(report.metadata.steps).toBe("10");
    expect(report.header.bytes).toBeGreaterThan(0);
    expect(report.manifest).toBeNull();
  });

  it("prints a readable report", async () => {
    const r = await cli(["inspect", adapter]);
    expect(r.code).toBe(EXIT.ok);
    expect(r.stdout).toContain("shape     4 modules × rank 4, F32");
    expect(r.stdout).toContain("values    R: min -1 max 1.938");
    expect(r.stdout).toContain("zeros 26.6%");
    expect(r.stdout).toContain("metadata  source = worker");
    expect(r.stdout.trimEnd().endsWith("valid")).toBe(true);
  });

  it("matches the manifest: digest, rank and modules all ok (exit 0)", async () => {
    const r = await cli(["inspect", adapter, "--manifest", model.manifestPath, "--json"]);
    expect(r.code).toBe(EXIT.ok);
    const report = JSON.parse(r.stdout);
    expect(report.manifest.matches).toBe(true);
    expect(report.manifest.checks.map((c: { field: string }) => c.field)).toEqual([
      "model",
      "factors",
      "rank",
      "modules",
    ]);
    expect(report.module_norms[1].module).toBe("model.layers.0.self_attn.v_proj");
  });

  it("names each mismatch against another model's manifest (exit 1)", async () => {
    const other = await makeModel({ id: "other-model", rank: 4, seed: 99 });
    const r = await cli(["inspect", adapter, "--manifest", other.manifestPath]);
    expect(r.code).toBe(EXIT.invalid);
    expect(r.stdout).toContain(`MISMATCH model: adapter ${model.id}, manifest other-model`);
    expect(r.stdout).toContain(
      `MISMATCH factors: adapter ${model.digest}, manifest ${other.digest}`,
    );
    expect(r.stdout).toContain("ok       rank: adapter 4");
    expect(r.stdout).toContain("INVALID: the adapter does not match the manifest");
  });

  it("rejects a truncated adapter with the format's error code (exit 1)", async () => {
    const bytes = await readFile(adapter);
    const bad = join(model.dir, "truncated.safetensors");
    await writeFile(bad, bytes.subarray(0, bytes.length - 3));
    const r = await cli(["inspect", bad, "--json"]);
    expect(r.code).toBe(EXIT.invalid);
    const report = JSON.parse(r.stdout);
    expect(report.valid).toBe(false);
    expect(report.error.code).toBe("offsets_out_of_bounds");
    const text = await cli(["inspect", bad]);
    expect(text.code).toBe(EXIT.invalid);
    expect(text.stdout).toContain("INVALID");
    expect(text.stdout).toContain("code offsets_out_of_bounds");
  });

  it("rejects a file that is not safetensors at all (exit 1)", async () => {
    const bad = join(model.dir, "garbage.safetensors");
    await writeFile(bad, "this is not an adapter, just text");
    const r = await cli(["inspect", bad, "--json"]);
    expect(r.code).toBe(EXIT.invalid);
    expect(JSON.parse(r.stdout).error.code).toBe("header_too_large");
  });

  it("rejects a non-finite value (exit 1, value_not_finite)", async () => {
    const bytes = new Uint8Array(await readFile(adapter));
    const view = new DataView(bytes.buffer);
    view.setFloat32(bytes.length - 4, Number.NaN, true);
    const bad = join(model.dir, "nan.safetensors");
    await writeFile(bad, bytes);
    const r = await cli(["inspect", bad, "--json"]);
    expect(r.code).toBe(EXIT.invalid);
    expect(JSON.parse(r.stdout).error.code).toBe("value_not_finite");
  });

  it("says which file is missing: the adapter or the manifest (exit 1)", async () => {
    const a = await cli(["inspect", join(model.dir, "nope.safetensors")]);
    expect(a.code).toBe(EXIT.invalid);
    expect(a.stderr).toContain(
      `cannot read adapter ${join(model.dir, "nope.safetensors")}: ENOENT`,
    );
    const m = await cli(["inspect", adapter, "--manifest", join(model.dir, "nope.json")]);
    expect(m.code).toBe(EXIT.invalid);
    expect(m.stderr).toContain(`cannot read manifest ${join(model.dir, "nope.json")}: ENOENT`);
  });

  it("rejects a manifest that breaks the schema, naming the field (exit 1)", async () => {
    const manifest = JSON.parse(await readFile(model.manifestPath, "utf8"));
    delete manifest.rank;
    manifest.modules[0].in = 0;
    const bad = join(model.dir, "bad-manifest.json");
    await writeFile(bad, JSON.stringify(manifest));
    const r = await cli(["inspect", adapter, "--manifest", bad]);
    expect(r.code).toBe(EXIT.invalid);
    expect(r.stderr).toContain(`manifest ${bad}: invalid manifest:`);
    expect(r.stderr).toContain("rank: missing");
    expect(r.stderr).toContain("modules.0.in:");
  });
});
