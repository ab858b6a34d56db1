// npm start's server in real Chromium: the page loads the model on the device, a user is chosen,
// base and personal generations complete and differ, a bad upload shows the server's error,
// training on the device lowers the loss and uploads a new adapter version (cancel keeps the old
// one), and the WebGPU build (software SwiftShader here) gives the WASM build's greedy tokens.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BASE_FLAGS, CHROMIUM } from "../../harness/browser/chromium.ts";
import { decodeAdapter, encodeAdapter } from "../../src/format/index.ts";
import { type StartedServer, startServer } from "./start-server.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
/** The small test model: prepared once into a git-ignored folder, reused by later runs. */
const MODEL = "tiny-llama";
const MODELS_CACHE = join(root, ".cache", "e2e-models");
/** Keyed by the Python sources that write it, so a change to prepare prepares it again. */
const MODELS_DIR = join(MODELS_CACHE, prepareSourcesDigest());
const ARTIFACTS = join(root, "test-results", "e2e");
/** First run prepares tiny-llama (about 80 s on two cores); later runs start in about 20 s. */
const START_TIMEOUT_MS = 600_000;
/** σ of the random demo adapters: at 0.1 the random 2-layer model's greedy tokens barely move. */
const RANDOM_SIGMA = "1";
/** Optimizer steps of the on-device training check: a few seconds on WASM for tiny-llama. */
const TRAIN_STEPS = 20;
/** Its learning rate: tiny-llama's loss falls ~15 % in 20 steps at 1e-2 (measured in Node, WASM). */
const TRAIN_LR = "0.01";
/** A word that appears only in the pasted training text, to prove no request carried it. */
const PRIVATE_MARKER = "zanzibarquokka";
const CHROMIUM_FLAGS = [...BASE_FLAGS, "--enable-unsafe-webgpu"];

type DemoStatus = {
  ready: boolean;
  device: string;
  graph: string;
  downloadedBytes: number;
  cachedFiles: number;
  user: string;
  version: number;
  generations: number;
  last: { label: string; text: string; tokens: number }[];
  error: string;
  training: { state: string; losses: number[]; version: number; error: string };
};

function prepareSourcesDigest(): string {
  const dir = join(root, "scripts", "loraxs");
  const hash = createHash("sha256");
  for (const name of readdirSync(dir)
    .filter((n) => n.endsWith(".py"))
    .sort()) {
    hash.update(name).update(readFileSync(join(dir, name)));
  }
  return hash.digest("hex").slice(0, 12);
}

const startArgs = () => [
  "--port",
  "0",
  "--model",
  MODEL,
  "--models-dir",
  MODELS_DIR,
  "--persist-to",
  persistDir,
  "--random-sigma",
  RANDOM_SIGMA,
  "--train-step",
];

let server: StartedServer;
let context: BrowserContext;
let page: Page;
let persistDir: string;
let profileDir: string;
const pageErrors: string[] = [];
let wasmBaseText = "";

const demo = () => page.evaluate(() => (globalThis as unknown as { demo: DemoStatus }).demo);
/** Waits until the page has loaded its model or shown an error. */
const demoSettled = () =>
  page.waitForFunction(
    () => {
      const d = (globalThis as unknown as { demo?: DemoStatus }).demo;
      return d?.ready === true || Boolean(d?.error);
    },
    null,
    { timeout: 120_000 },
  );

beforeAll(async () => {
  if (existsSync(MODELS_CACHE)) {
    for (const name of readdirSync(MODELS_CACHE)) {
      const path = join(MODELS_CACHE, name);
      if (path !== MODELS_DIR) rmSync(path, { recursive: true, force: true });
    }
  }
  persistDir = mkdtempSync(join(tmpdir(), "loraxs-e2e-state-"));
  profileDir = mkdtempSync(join(tmpdir(), "loraxs-e2e-chromium-"));
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer(startArgs(), START_TIMEOUT_MS);
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    ignoreDefaultArgs: ["--headless"],
    args: CHROMIUM_FLAGS,
    viewport: { width: 1200, height: 1000 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (error) => pageErrors.push(error.message));
});

afterAll(async () => {
  await context?.close();
  await server?.stop();
  for (const dir of [persistDir, profileDir])
    if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("demo page on npm start's server", () => {
  it("loads the model on this device and reports the backend", async () => {
    await page.goto(`${server.url}/`);
    await demoSettled();
    const status = await demo();
    expect(status.error).toBe("");
    expect(["wasm", "webgpu"]).toContain(status.device);
    expect(await page.textContent("#backend")).toBe(status.device === "wasm" ? "WASM" : "WebGPU");
    expect((await page.textContent("#backend-note"))?.length).toBeGreaterThan(10);
    expect(await page.textContent("#load-status")).toMatch(/^ready in [\d.]+ s .*tiny-llama/);
    expect(await page.isHidden("#token-form")).toBe(true);
    // The fused graph (the manifest's first for this device), downloaded on this first visit.
    expect(status.graph).toBe("fused");
    expect(status.downloadedBytes).toBeGreaterThan(1_000_000);
  });

  it("a second visit downloads no weights: every file comes from Cache Storage", async () => {
    const weights = new Set<string>();
    const onResponse = (r: { url: () => string }) => {
      if (/\/files\/model\.[^/]*onnx/.test(r.url())) weights.add(r.url());
    };
    page.on("response", onResponse);
    await page.reload();
    await demoSettled();
    page.off("response", onResponse);
    const status = await demo();
    expect(status.error).toBe("");
    expect(status.downloadedBytes).toBe(0);
    expect(status.cachedFiles).toBeGreaterThanOrEqual(3); // graph, its data files, tokenizer, factors
    expect([...weights]).toEqual([]);
    expect(await page.textContent("#load-status")).toMatch(
      /from this browser's Cache Storage, nothing downloaded/,
    );
  });

  it("chooses a user and shows their adapter", async () => {
    const options = await page.$$eval("#user-select option", (els) =>
      els.map((el) => (el as HTMLOptionElement).value),
    );
    expect(options).toEqual(["random-a", "random-b"]);
    await page.selectOption("#user-select", "random-b");
    await page.waitForFunction(() => {
      const card = document.querySelector("#adapter-card")?.textContent ?? "";
      return card.includes("random-b") && card.includes("Tensor");
    });
    const card = await page.textContent("#adapter-card");
    expect(card).toMatch(/Version\s*1 of 1/);
    expect(card).toMatch(/R \[4, 16, 16\] F16/);
    expect(await page.textContent("#personal-title")).toBe("random-b's model");
  });

  it("streams the base and the personal model side by side, and they differ", async () => {
    await page.fill("#prompt", "My fellow Americans,");
    await page.fill("#max-tokens", "16");
    await page.click("#generate");
    await page.waitForFunction(
      () => (globalThis as unknown as { demo: DemoStatus }).demo.generations === 1,
      null,
      { timeout: 120_000 },
    );
    const { last } = await demo();
    expect(last.map((side) => side.label)).toEqual(["zeros", "random-b"]);
    for (const side of last) {
      expect(side.tokens).toBeGreaterThan(0);
      expect(side.text.trim().length).toBeGreaterThan(0);
    }
    expect(last[0]?.text).not.toBe(last[1]?.text);
    wasmBaseText = last[0]?.text ?? "";
    expect(await page.textContent("#base-rate")).toMatch(/^\d+ tokens, [\d.]+ tokens\/s$/);
    expect(await page.textContent("#personal-rate")).toMatch(/^\d+ tokens, [\d.]+ tokens\/s$/);
  });

  it("shows the server's error code for an adapter trained against other factors", async () => {
    const manifest = (await (await fetch(`${server.url}/v1/models/${MODEL}`)).json()) as {
      rank: number;
      modules: unknown[];
    };
    const wrong = encodeAdapter({
      model: MODEL,
      factors: `sha256:${"0".repeat(64)}`,
      rank: manifest.rank,
      modules: manifest.modules.length,
      R: new Float32Array(manifest.modules.length * manifest.rank * manifest.rank),
    });
    await page.setInputFiles("#upload-file", {
      name: "other-factors.safetensors",
      mimeType: "application/octet-stream",
      buffer: Buffer.from(wrong),
    });
    await page.click("#upload-form button[type=submit]");
    await page.waitForSelector('#upload-verdict[data-ok="false"]', { timeout: 30_000 });
    const verdict = await page.textContent("#upload-verdict");
    expect(verdict).toMatch(/^refused by the server: 422 adapter\.factors_mismatch: /);
    expect(verdict).toContain("0".repeat(16));
    // The page kept the user's current adapter.
    expect((await demo()).version).toBe(1);
    await page.screenshot({ path: join(ARTIFACTS, "demo-page.png"), fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it("trains the user's R on this device: the loss falls, a new version is uploaded and used", async () => {
    expect(await page.isVisible("#device-train-form")).toBe(true);
    expect(await page.isHidden("#device-train-note")).toBe(true);
    expect(await page.textContent("#device-train")).toMatch(
      /text you paste stays\s+on this device/,
    );
    const sent: string[] = [];
    page.on("request", (request) => {
      const body = request.postDataBuffer();
      if (body?.includes(PRIVATE_MARKER)) sent.push(`${request.method()} ${request.url()}`);
    });
    const text = Array.from(
      { length: 6 },
      (_, i) => `Paragraph ${i}: my ${PRIVATE_MARKER} writes letters to the union every winter.`,
    ).join("\n\n");
    await page.fill("#device-train-text", text);
    await page.fill("#device-train-steps", String(TRAIN_STEPS));
    await page.fill("#device-train-lr", TRAIN_LR);
    await page.click("#device-train-start");
    await page.waitForFunction(
      () => {
        const t = (globalThis as unknown as { demo: DemoStatus }).demo.training;
        return t.state === "done" || t.state === "error";
      },
      null,
      { timeout: 120_000 },
    );
    const { training, version } = await demo();
    expect(training.error).toBe("");
    expect(training.losses).toHaveLength(TRAIN_STEPS);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(training.losses.slice(0, 3));
    const last = mean(training.losses.slice(-3));
    expect(last).toBeLessThan(first * 0.9);
    expect(training.version).toBe(2);
    expect(version).toBe(2);
    expect(await page.textContent("#device-train-progress")).toMatch(
      new RegExp(
        `^step ${TRAIN_STEPS} of ${TRAIN_STEPS} — loss [\\d.]+ — \\d+ tokens/s — about \\d+ s left$`,
      ),
    );
    expect(await page.textContent("#device-train-status")).toMatch(
      /as version 2 \(If-Match "?[0-9a-f]{64}"?\)/,
    );
    expect(await page.textContent("#adapter-card")).toMatch(/Version\s*2 of 2 \(source: client\)/);
    expect(sent).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, "device-train.png"), fullPage: true });

    // The API holds the new version: an F16 adapter for this model, made on the client.
    const config = (await (await fetch(`${server.url}/demo-config.json`)).json()) as {
      users: { id: string; token: string }[];
    };
    const token = config.users.find((u) => u.id === "random-b")?.token ?? "";
    const base = `${server.url}/v1/models/${MODEL}/users/random-b/adapter`;
    const auth = { authorization: `Bearer ${token}` };
    const bytes = new Uint8Array(await (await fetch(base, { headers: auth })).arrayBuffer());
    const adapter = decodeAdapter(bytes);
    expect(adapter.metadata).toMatchObject({ source: "client", steps: String(TRAIN_STEPS) });
    expect(adapter.model).toBe(MODEL);

    // The personal column now runs the trained R.
    const before = (await demo()).generations;
    await page.fill("#max-tokens", "8");
    await page.click("#generate");
    await page.waitForFunction(
      (n) => (globalThis as unknown as { demo: DemoStatus }).demo.generations === n,
      before + 1,
      { timeout: 120_000 },
    );
    expect((await demo()).last.map((side) => side.label)).toEqual(["zeros", "random-b"]);

    // A cancelled run uploads nothing and keeps version 2.
    await page.fill("#device-train-steps", "100000");
    await page.click("#device-train-start");
    await page.waitForFunction(
      () => (globalThis as unknown as { demo: DemoStatus }).demo.training.losses.length >= 2,
      null,
      { timeout: 60_000 },
    );
    await page.click("#device-train-cancel");
    await page.waitForFunction(
      () => (globalThis as unknown as { demo: DemoStatus }).demo.training.state !== "running",
      null,
      { timeout: 60_000 },
    );
    expect((await demo()).training.state).toBe("cancelled");
    expect(await page.textContent("#device-train-status")).toMatch(
      /^cancelled after \d+ steps: nothing was uploaded/,
    );
    const versions = (await (await fetch(`${base}/versions`, { headers: auth })).json()) as {
      versions: { version: number; source: string }[];
    };
    expect(versions.versions.map((v) => [v.version, v.source])).toEqual([
      [2, "client"],
      [1, expect.any(String)],
    ]);
    // Back to the seeded demo adapter, so a restart finds it current (checked below).
    const restore = await fetch(`${base}/versions/1/restore`, { method: "POST", headers: auth });
    expect(restore.status).toBe(201);
    expect(pageErrors).toEqual([]);
  });

  it("runs the same model on WebGPU when chosen, with the same greedy tokens", async () => {
    await page.selectOption("#device", "webgpu");
    await page.waitForFunction(
      () => {
        const d = (globalThis as unknown as { demo: DemoStatus }).demo;
        return (d.ready && d.device === "webgpu") || Boolean(d.error);
      },
      null,
      { timeout: 120_000 },
    );
    expect((await demo()).error).toBe("");
    expect(await page.textContent("#backend")).toBe("WebGPU");
    // WebGPU runs its own fused graph, attention in plain ops (docs/client.md: onnxruntime-web's
    // WebGPU GroupQueryAttention is wrong for long prompts); the demo prompt is longer than 32 tokens.
    expect((await demo()).graph).toBe("fusedw");
    // SwiftShader (software WebGPU) takes seconds per token: a few tokens prove the path.
    await page.fill("#max-tokens", "3");
    const before = (await demo()).generations;
    await page.click("#generate");
    await page.waitForFunction(
      (n) => (globalThis as unknown as { demo: DemoStatus }).demo.generations === n,
      before + 1,
      { timeout: 240_000 },
    );
    const { last } = await demo();
    expect(last[0]?.tokens).toBe(3);
    expect(wasmBaseText.startsWith(last[0]?.text ?? "-")).toBe(true);
    expect(last[1]?.tokens).toBe(3);
    expect(pageErrors).toEqual([]);
  });

  it("stops wrangler dev on SIGTERM, and a second start on the same state uploads nothing", async () => {
    expect(server.log.join("\n")).toMatch(
      /7\/8 ok .* — [1-9]\d* file\(s\) uploaded, 0 already there/,
    );
    await server.stop();
    expect(server.log.join("\n")).toMatch(
      /SIGTERM: stopping 1 process\(es\) by PID[\s\S]*\[start\] stopped/,
    );
    await expect(fetch(`${server.url}/v1/health`)).rejects.toThrow();
    server = await startServer(startArgs(), START_TIMEOUT_MS);
    const log = server.log.join("\n");
    expect(log).toMatch(
      /7\/8 ok .* — 0 file\(s\) uploaded, [1-9]\d* already there, manifest unchanged/,
    );
    expect(log).toMatch(/8\/8 ok .* — 2 user\(s\), 0 adapter\(s\) uploaded/);
    expect(log).toContain("JWT_SECRET read from .dev.vars");
    expect(log).toContain("already up to date");
    expect((await fetch(`${server.url}/v1/health`)).status).toBe(200);
  });
});
