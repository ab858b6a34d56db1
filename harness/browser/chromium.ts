// Debian's Chromium through playwright-core, headless, WebGPU on SwiftShader (toolchain.md's
// flags), a fresh profile each launch, removed on close.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const hasChromium = () => existsSync(CHROMIUM);

/** Headless, quiet, no first-run or network side work; `--enable-unsafe-webgpu` is added per launch. */
export const BASE_FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--disable-dev-shm-usage",
];

export interface Browser {
  context: BrowserContext;
  page: Page;
  logs: string[];
  close(): Promise<void>;
}

/** `gpu: false` launches with --disable-gpu: no WebGPU adapter, so `auto` must fall back to WASM. */
export async function launch(url: string, { gpu = true } = {}): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), "loraxs-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...BASE_FLAGS, ...(gpu ? ["--enable-unsafe-webgpu"] : ["--disable-gpu"])],
    ignoreDefaultArgs: ["--headless"],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const logs: string[] = [];
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(
    () => (window as unknown as { __ready?: boolean }).__ready === true,
    null,
    { timeout: 60_000 },
  );
  return {
    context,
    page,
    logs,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
