// The seams of docs/contracts.md, enforced by the tools `npm test` runs: a deliberate bad import
// fails `biome lint` (biome.json's noRestrictedImports overrides), and each side's tsconfig
// hides the other side's globals (no Workers types in the client, no DOM in the API).
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../../..");
const bin = (name: string) => join(root, "node_modules/.bin", name);

/** Lints `source` as if it were the file `path` (relative to the root); removes it afterwards. */
function lintAs(path: string, source: string) {
  const file = join(root, path);
  writeFileSync(file, source);
  try {
    const r = spawnSync(bin("biome"), ["lint", "--colors=off", path], {
      cwd: root,
      encoding: "utf8",
    });
    return { status: r.status, output: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(file, { force: true });
  }
}

/**
 * Type-checks `source` under the compiler options of `project` (a folder's tsconfig), with the
 * global declaration files that project includes (`ambient`).
 */
function typecheckAs(project: string, source: string, ambient: string[] = []) {
  // Inside the checkout (git-ignored .cache/) so that `types` resolve from its node_modules.
  mkdirSync(join(root, ".cache"), { recursive: true });
  const dir = mkdtempSync(join(root, ".cache", "seam-"));
  try {
    writeFileSync(join(dir, "probe.ts"), source);
    const tsconfig = {
      extends: join(root, project, "tsconfig.json"),
      files: [join(dir, "probe.ts"), ...ambient.map((f) => join(root, f))],
      include: [],
    };
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(tsconfig));
    const r = spawnSync(bin("tsc"), ["--noEmit", "-p", dir], { cwd: root, encoding: "utf8" });
    return { status: r.status, output: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const probe = (name: string) => `seam-probe-${process.pid}-${name}.ts`;

describe("seams", () => {
  it.each([
    [
      "src/api",
      'import * as ort from "onnxruntime-web";\n\nexport const x = ort;\n',
      "onnxruntime",
    ],
    [
      "src/cli",
      'import * as ort from "onnxruntime-node";\n\nexport const x = ort;\n',
      "onnxruntime",
    ],
    ["src/client", 'import { Hono } from "hono";\n\nexport const x = Hono;\n', "Hono"],
    [
      "src/client/backend",
      'import * as w from "cloudflare:workers";\n\nexport const x = w;\n',
      "Hono",
    ],
    ["src/format", 'import { z } from "zod";\n\nexport const x = z;\n', "imports nothing"],
    [
      "src/format",
      'import * as m from "../manifest/index.ts";\n\nexport const x = m;\n',
      "imports nothing",
    ],
    [
      "bench",
      'import { canRun } from "../test/shared/requirements.ts";\n\nexport const x = canRun;\n',
      "do not import test code",
    ],
    [
      "harness",
      'import { canRun } from "../test/shared/requirements.ts";\n\nexport const x = canRun;\n',
      "do not import test code",
    ],
  ])("a bad import in %s fails the lint", (folder, source, message) => {
    const r = lintAs(`${folder}/${probe("bad")}`, source);
    expect(r.status).not.toBe(0);
    expect(r.output).toContain("lint/style/noRestrictedImports");
    expect(r.output).toContain(message);
  });

  it.each([
    ["src/client/backend", 'import * as ort from "onnxruntime-web";\n\nexport const x = ort;\n'],
    ["src/api", 'import { Hono } from "hono";\n\nexport const x = Hono;\n'],
    ["src/format", 'import { sha256Hex } from "./digest.ts";\n\nexport const x = sha256Hex;\n'],
    ["bench", 'import { REPO } from "../harness/models.ts";\n\nexport const x = REPO;\n'],
  ])("the allowed import in %s passes", (folder, source) => {
    const r = lintAs(`${folder}/${probe("ok")}`, source);
    expect(r.output).not.toContain("noRestrictedImports");
    expect(r.status).toBe(0);
  });

  it("an import cycle fails the lint", () => {
    const a = `src/api/${probe("cycle-a")}`;
    const b = `src/api/${probe("cycle-b")}`;
    const name = (path: string) => `./${path.split("/").pop()}`;
    writeFileSync(join(root, b), `import type { A } from "${name(a)}";\n\nexport type B = A[];\n`);
    try {
      const r = lintAs(a, `import type { B } from "${name(b)}";\n\nexport type A = { b?: B };\n`);
      expect(r.status).not.toBe(0);
      expect(r.output).toContain("lint/suspicious/noImportCycles");
    } finally {
      rmSync(join(root, b), { force: true });
    }
  });

  it("the API sees Workers types and no DOM", () => {
    const workers = ["worker-configuration.d.ts"];
    expect(typecheckAs("src/api", "export type K = KVNamespace;\n", workers).status).toBe(0);
    const r = typecheckAs("src/api", "export const t = document.title;\n", workers);
    expect(r.status).not.toBe(0);
    expect(r.output).toContain("'document'");
  });

  it("the client sees the DOM and no Workers types", () => {
    expect(typecheckAs("src/client", "export const t = () => document.title;\n").status).toBe(0);
    const r = typecheckAs("src/client", "export type K = KVNamespace;\n");
    expect(r.status).not.toBe(0);
    expect(r.output).toContain("'KVNamespace'");
  });
});
