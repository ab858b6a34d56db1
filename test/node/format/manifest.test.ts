import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeAdapter } from "../../../src/format/index.ts";
import { expectationsFor, ManifestError, parseManifest } from "../../../src/manifest/index.ts";
import { cases as adapterCases, bytesOf } from "./fixtures.ts";

const root = new URL("../../..", import.meta.url).pathname;
const dir = join(root, "test", "fixtures", "manifests");
interface ManifestCase {
  name: string;
  file: string;
  valid: boolean;
  note: string;
  issues?: { path: string; code: string }[];
  expectations?: Record<string, unknown>;
}
const cases: ManifestCase[] = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8")).cases;
const load = (file: string): unknown => JSON.parse(readFileSync(join(dir, file), "utf8"));

function issuesOf(json: unknown) {
  try {
    parseManifest(json);
    return [];
  } catch (e) {
    if (!(e instanceof ManifestError)) throw e;
    return e.issues;
  }
}

describe("manifest fixtures", () => {
  for (const c of cases) {
    it(`${c.name}: ${c.valid ? "valid" : c.issues?.map((i) => `${i.path} ${i.code}`).join(", ")}`, () => {
      const json = load(c.file);
      if (c.valid) {
        const m = parseManifest(json);
        expect(expectationsFor(m)).toEqual(c.expectations);
        return;
      }
      const issues = issuesOf(json);
      for (const want of c.issues ?? []) {
        expect(issues).toContainEqual(expect.objectContaining(want));
      }
    });
  }
});

describe("parseManifest", () => {
  it("accepts the committed smollm2-135m manifest", () => {
    const json = load(join("..", "..", "..", "models", "smollm2-135m", "manifest.json"));
    const m = parseManifest(json);
    expect(expectationsFor(m)).toMatchObject({ model: "smollm2-135m", rank: 16 });
    expect(expectationsFor(m).hidden).toBeUndefined();
  });

  it("names the path and the offending value in the message", () => {
    const m = load("decoder.json") as { modules: { in: number }[] };
    (m.modules[1] as { in: number }).in = -3;
    expect(() => parseManifest(m)).toThrow(/modules\.1\.in: .*-3/);
    expect(() => parseManifest(null)).toThrow(ManifestError);
  });

  it("gives expectations that accept the matching fixture adapters and refuse others", () => {
    const llama = expectationsFor(parseManifest(load("decoder.json")));
    const bert = expectationsFor(parseManifest(load("encoder.json")));
    const file = (name: string) =>
      bytesOf(adapterCases.find((c) => c.name === name) as (typeof adapterCases)[0]);
    expect(decodeAdapter(file("ts-f16"), llama).model).toBe("tiny-llama");
    expect(decodeAdapter(file("ts-head-f16"), bert).head?.hidden).toBe(4);
    expect(() => decodeAdapter(file("ts-f16"), bert)).toThrow(/model_mismatch/);
  });
});

describe("population factors in the manifest", () => {
  type Svd = Record<string, unknown>;
  const withSvd = (svd: Svd) => {
    const m = load("decoder.json") as { factors: { svd: Svd } };
    m.factors.svd = svd;
    return m;
  };

  it("accepts method population with its factor users and data", () => {
    const svd = {
      method: "population",
      seed: 0,
      factor_users: 16,
      factor_data: "sotu+brown factor users",
    };
    expect(parseManifest(withSvd(svd)).factors.svd).toEqual(svd);
  });

  it("refuses an unknown method and a negative factor-user count", () => {
    expect(issuesOf(withSvd({ method: "learned", seed: 0 }))).toEqual([
      expect.objectContaining({ path: "factors.svd.method", code: "invalid" }),
    ]);
    expect(issuesOf(withSvd({ method: "population", seed: 0, factor_users: -1 }))).toEqual([
      expect.objectContaining({ path: "factors.svd.factor_users", code: "invalid" }),
    ]);
  });
});

describe("smollm2-135m's committed factor set", () => {
  it("refuses an adapter pinned to the earlier SVD factors with factors_mismatch", () => {
    const m = parseManifest(
      JSON.parse(readFileSync(join(root, "models", "smollm2-135m", "manifest.json"), "utf8")),
    );
    const old = readFileSync(
      join(root, "test", "fixtures", "pinned", "smollm2-svd-factors-barack-obama.safetensors"),
    );
    expect(() => decodeAdapter(new Uint8Array(old), expectationsFor(m))).toThrow(
      /factors_mismatch/,
    );
    const demo = readFileSync(
      join(root, "models", "smollm2-135m", "adapters", "barack-obama.safetensors"),
    );
    expect(decodeAdapter(new Uint8Array(demo), expectationsFor(m)).factors).toBe(m.factors.sha256);
  });
});
