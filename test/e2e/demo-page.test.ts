// npm start's server in real Chromium: the page loads the model on the device, a user is chosen,
// base and personal generations complete and differ, a bad upload shows the server's error, and
// the WebGPU build (software SwiftShader here) gives the WASM build's greedy tokens.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeAdapter } from "../../src/format/index.ts";
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
const CHROMIUM_FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--enable-unsafe-webgpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--disable-dev-shm-usage",
];

type DemoStatus = {
  ready: boolean;
  device: string;
  user: string;
  version: number;
  generations: number;
  last: { label: string; text: string; tokens: number }[];
  error: string;
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
];

let server: StartedServer;
let context: BrowserContext;
let page: Page;
let persistDir: string;
let profileDir: string;
const pageErrors: string[] = [];
let wasmBaseText = "";

const demo = () => page.evaluate(() => (globalThis as unknown as { demo: DemoStatus }).demo);

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
    executablePath: "/usr/bin/chromium",
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
    await page.waitForFunction(
      () => {
        const d = (globalThis as unknown as { demo?: DemoStatus }).demo;
        return d?.ready === true || Boolean(d?.error);
      },
      null,
      { timeout: 120_000 },
    );
    const status = await demo();
    expect(status.error).toBe("");
    expect(["wasm", "webgpu"]).toContain(status.device);
    expect(await page.textContent("#backend")).toBe(status.device === "wasm" ? "WASM" : "WebGPU");
    expect((await page.textContent("#backend-note"))?.length).toBeGreaterThan(10);
    expect(await page.textContent("#load-status")).toMatch(/^ready in [\d.]+ s .*tiny-llama/);
    expect(await page.isHidden("#token-form")).toBe(true);
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
    // SwiftShader (software WebGPU) takes seconds per token: a few tokens prove the path.
    await page.fill("#max-tokens", "3");
    await page.click("#generate");
    await page.waitForFunction(
      () => (globalThis as unknown as { demo: DemoStatus }).demo.generations === 2,
      null,
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
