// One prepared model per test file (or describe block), served over HTTP the way an app serves it: built if
// missing, its reference fixtures read, the server stopped after the file. The fields are set
// in the file's first beforeAll, so read them inside hooks and tests only.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { ensureModel } from "../../../../harness/models.ts";
import { type Reference, readReference } from "../../../../harness/reference.ts";
import { type StaticServer, startStaticServer } from "../../../../harness/static-server.ts";

export interface ServedModel {
  /** The prepared model's folder. */
  dir: string;
  ref: Reference;
  server: StaticServer;
  /** The manifest's URL on the server, what loadModel takes. */
  manifestUrl: string;
}

/** A test preset, built by prepare-model when missing. */
export function serveModel(preset: Parameters<typeof ensureModel>[0]): ServedModel {
  return serveFolder(() => ensureModel(preset));
}

/** A prepared folder (e.g. a real model prepared beforehand). */
export function serveFolder(folder: () => string | Promise<string>): ServedModel {
  const served = {} as ServedModel;
  beforeAll(async () => {
    served.dir = await folder();
    served.ref = readReference(served.dir);
    served.server = await startStaticServer(served.dir);
    served.manifestUrl = `${served.server.url}/manifest.json`;
  });
  afterAll(async () => {
    await served.server?.close();
  });
  return served;
}

/** A fresh temporary folder for the file (e.g. an fsCache), removed after it. */
export function useTempDir(prefix: string): { path: string } {
  const temp = { path: "" };
  beforeAll(() => {
    temp.path = mkdtempSync(join(tmpdir(), prefix));
  });
  afterAll(() => {
    if (temp.path) rmSync(temp.path, { recursive: true, force: true });
  });
  return temp;
}
