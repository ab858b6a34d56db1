import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type StaticServer, startStaticServer } from "../../../harness/static-server.ts";
import {
  fsCache,
  ModelFileError,
  memoryCache,
  OfflineError,
  type Progress,
} from "../../../src/client/index.ts";
import { loadModelFiles, modelSource } from "../../../src/client/loader/index.ts";

// A model folder with real files (contents irrelevant to the loader) and a manifest naming them.
const root = mkdtempSync(join(tmpdir(), "loraxs-loader-"));
const files = {
  "model.onnx": new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff),
  "model.onnx.data": new Uint8Array(1_000_000).map((_, i) => (i * 13) & 0xff),
  "tokenizer.json": new TextEncoder().encode('{"model": {}}'),
  "factors.safetensors": new Uint8Array(64).map((_, i) => i),
};
const sha = (b: Uint8Array) => `sha256:${createHash("sha256").update(b).digest("hex")}`;
// The schema's decoder fixture, cut down to one module of rank 2 and these files.
const fixture = JSON.parse(
  readFileSync(join(import.meta.dirname, "../../fixtures/manifests/decoder.json"), "utf8"),
);
const manifest = {
  ...fixture,
  id: "loader-test",
  rank: 2,
  modules: [{ name: "m.0", in: 4, out: 4 }],
  factors: { ...fixture.factors, sha256: sha(files["factors.safetensors"]) },
  io: { ...fixture.io, R: { name: "R", shape: [1, 2, 2], dtype: "float32" } },
  config: { ...fixture.config, hidden_size: 4, vocab_size: 8 },
  tokenizer: { files: ["tokenizer.json"], chat_template: false },
  files: [
    { name: "model.onnx", role: "onnx", sha256: sha(files["model.onnx"]), bytes: 300_000 },
    {
      name: "model.onnx.data",
      role: "onnx-data",
      sha256: sha(files["model.onnx.data"]),
      bytes: 1_000_000,
    },
    {
      name: "tokenizer.json",
      role: "tokenizer",
      sha256: sha(files["tokenizer.json"]),
      bytes: files["tokenizer.json"].byteLength,
    },
    {
      name: "factors.safetensors",
      role: "factors",
      sha256: sha(files["factors.safetensors"]),
      bytes: files["factors.safetensors"].byteLength,
    },
  ],
};
const SMALL_BYTES = files["tokenizer.json"].byteLength + files["factors.safetensors"].byteLength;
for (const [name, bytes] of Object.entries(files)) writeFileSync(join(root, name), bytes);
writeFileSync(join(root, "manifest.json"), JSON.stringify(manifest));

let server: StaticServer;
beforeAll(async () => {
  server = await startStaticServer(root);
});
afterAll(async () => {
  await server.close();
  rmSync(root, { recursive: true, force: true });
});

describe("model file loader", () => {
  it("downloads every file with progress, verifies it, and the second start downloads nothing", async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), "loraxs-cache-"));
    try {
      const cache = await fsCache(cacheDir);
      const source = modelSource(`${server.url}/manifest.json`);
      const events: Progress[] = [];
      server.requests.length = 0;
      const first = await loadModelFiles(source, { cache, onProgress: (p) => events.push(p) });
      expect(server.requests).toEqual([
        "/manifest.json",
        "/model.onnx",
        "/model.onnx.data",
        "/tokenizer.json",
        "/factors.safetensors",
      ]);
      expect(first.timings.downloadedBytes).toBe(1_300_000 + SMALL_BYTES);
      expect(first.files.get("model.onnx.data")?.bytes).toEqual(files["model.onnx.data"]);
      const data = events.filter((e) => e.file === "model.onnx.data" && e.phase === "download");
      expect(data.length).toBeGreaterThan(1);
      expect(data.at(-1)?.loaded).toBe(1_000_000);
      expect(data.every((e, i) => i === 0 || e.loaded > (data[i - 1]?.loaded ?? 0))).toBe(true);

      server.requests.length = 0;
      const second = await loadModelFiles(source, {
        cache,
        pathOnly: (f) => f.role === "onnx" || f.role === "onnx-data",
      });
      expect(server.requests).toEqual(["/manifest.json"]);
      expect(second.timings.cachedFiles).toBe(4);
      expect(second.timings.downloadedBytes).toBe(0);
      // onnxruntime-node reads the graph by path: the graph and its data share a folder.
      expect(second.files.get("model.onnx")?.path).toBe(
        join(cacheDir, "models", "loader-test", "model.onnx"),
      );
      expect(second.files.get("model.onnx.data")?.path).toBe(
        join(cacheDir, "models", "loader-test", "model.onnx.data"),
      );
      expect(second.files.get("tokenizer.json")?.bytes).toEqual(files["tokenizer.json"]);
    } finally {
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  it("refuses a file whose sha256 differs from the manifest and caches nothing of it", async () => {
    const cache = memoryCache();
    server.corrupt.add("/model.onnx.data");
    try {
      const error = await loadModelFiles(modelSource(`${server.url}/manifest.json`), {
        cache,
      }).catch((e) => e);
      expect(error).toBeInstanceOf(ModelFileError);
      expect(error.code).toBe("sha256_mismatch");
      expect(error.message).toContain(manifest.files[1]?.sha256);
      expect(await cache.get("models/loader-test/model.onnx.data")).toBeUndefined();
      expect(await cache.get("models/loader-test/model.onnx")).toBeDefined();
    } finally {
      server.corrupt.clear();
    }
  });

  it("reads a local folder in Node, and a cached manifest when the host is unreachable", async () => {
    const cache = memoryCache();
    const local = await loadModelFiles(modelSource(root), { cache });
    expect(local.manifest.id).toBe("loader-test");
    const other = await startStaticServer(root);
    const url = `${other.url}/manifest.json`;
    await loadModelFiles(modelSource(url), { cache });
    await other.close();
    const offline = await loadModelFiles(modelSource(url), { cache });
    expect(offline.timings.cachedFiles).toBe(4);
    const error = await loadModelFiles(modelSource(url), { cache: memoryCache() }).catch((e) => e);
    expect(error).toBeInstanceOf(OfflineError);
    expect(error.message).toContain(url);
  });

  it("loads anyway when the cache refuses writes, and says which files were not cached", async () => {
    const full = memoryCache();
    const refusing = {
      ...full,
      put: async () => {
        throw new Error("QuotaExceededError");
      },
    };
    const loaded = await loadModelFiles(modelSource(`${server.url}/manifest.json`), {
      cache: refusing,
    });
    expect(loaded.files.get("model.onnx.data")?.bytes).toEqual(files["model.onnx.data"]);
    expect(loaded.timings.cacheWriteErrors).toEqual(
      ["model.onnx", "model.onnx.data", "tokenizer.json", "factors.safetensors"].map(
        (f) => `${f}: Error: QuotaExceededError`,
      ),
    );
  });

  it("skips the training step (role onnx-train) unless asked, then verifies it like any file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "loraxs-train-"));
    const graph = new Uint8Array(5000).map((_, i) => (i * 3) & 0xff);
    for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
    writeFileSync(join(dir, "model.train.onnx"), graph);
    const entry = { name: "model.train.onnx", role: "onnx-train", sha256: sha(graph), bytes: 5000 };
    const write = (e: typeof entry) =>
      writeFileSync(
        join(dir, "manifest.json"),
        JSON.stringify({ ...manifest, files: [...manifest.files, e] }),
      );
    write(entry);
    try {
      const plain = await loadModelFiles(modelSource(dir), { cache: memoryCache() });
      expect([...plain.files.keys()]).toEqual([
        "model.onnx",
        "model.onnx.data",
        "tokenizer.json",
        "factors.safetensors",
      ]);
      const cache = memoryCache();
      const withTrain = await loadModelFiles(modelSource(dir), { cache, train: true });
      expect(withTrain.files.get("model.train.onnx")?.bytes).toEqual(graph);
      expect((await cache.head("models/loader-test/model.train.onnx"))?.sha256).toBe(sha(graph));
      write({ ...entry, sha256: sha(new Uint8Array(1)) });
      await expect(
        loadModelFiles(modelSource(dir), { cache: memoryCache(), train: true }),
      ).rejects.toThrow(ModelFileError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a manifest whose R shape disagrees with rank and modules", async () => {
    const bad = mkdtempSync(join(tmpdir(), "loraxs-bad-"));
    writeFileSync(join(bad, "manifest.json"), JSON.stringify({ ...manifest, rank: 4 }));
    try {
      await expect(loadModelFiles(modelSource(bad), { cache: memoryCache() })).rejects.toThrow(
        /io\.R\.shape \[1, 2, 2\] is not \[modules, rank, rank\] = \[1, 4, 4\]/,
      );
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });
});
