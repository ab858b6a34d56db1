// The client in real Chromium (playwright-core, Debian's /usr/bin/chromium): WebGPU on
// SwiftShader and WASM against PyTorch's references, R resident on the GPU and swapped in one
// session, Cache Storage on the second start, and the WASM fallback without a GPU adapter.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildPage } from "../../browser/build.ts";
import { type Browser, hasChromium, launch } from "../../browser/chromium.ts";
import type { LoraxsPage } from "../../browser/page/entry.ts";
import { type PageServer, startPageServer } from "../../browser/server.ts";
import { ensureModel } from "./helpers/models.ts";

/**
 * Largest logit difference accepted per backend (logits reach |7| in these fixtures). WASM is
 * fp32 on the CPU like the Node runtimes (measured 5e-6 to 9e-6; see decoder.test.ts). WebGPU
 * on SwiftShader computes in its own shaders (tiled matmuls, its own exp and reductions):
 * measured 1.3e-3 to 2.2e-3 here (≈ 3e-4 of the largest logit; the toolchain probe saw 5.7e-5 on
 * a model with smaller logits). 5e-3 leaves room for that, is 1000× below what R moves the
 * logits by (≈ 7), and below half the smallest greedy margin (0.0145), so greedy tokens must
 * still agree with PyTorch's, which the test checks too.
 */
const TOLERANCE = { wasm: 5e-5, webgpu: 5e-3 } as const;

declare global {
  interface Window {
    loraxsPage: LoraxsPage;
  }
}

describe.skipIf(!hasChromium())("client in Chromium", () => {
  let server: PageServer;
  let browser: Browser;
  beforeAll(async () => {
    const dir = await ensureModel("tiny-llama");
    await buildPage();
    server = await startPageServer({ "tiny-llama": dir });
    browser = await launch(`${server.url}/`);
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it.each(["webgpu", "wasm"] as const)(
    "%s reproduces PyTorch for each adapter swapped in one session",
    async (device) => {
      const loaded = await browser.page.evaluate(
        (d) => window.loraxsPage.load("/models/tiny-llama/manifest.json", d),
        device,
      );
      expect(loaded.device).toBe(device);
      expect(loaded.rLocation).toBe(device === "webgpu" ? "gpu-buffer" : "cpu");
      const cases = await browser.page.evaluate(() =>
        window.loraxsPage.reference("/models/tiny-llama"),
      );
      console.log(
        device,
        loaded.reason,
        cases.map((c) => `${c.name}: ${c.error.toExponential(2)}`).join(", "),
      );
      expect(cases.map((c) => c.name)).toEqual(["base", "random-1", "random-2", "base"]);
      expect(cases.filter((c) => c.greedy !== null)).toHaveLength(3);
      for (const c of cases) {
        expect(c.error, `${device} ${c.name}`).toBeLessThan(TOLERANCE[device]);
        if (c.greedy !== null) expect(c.greedy).toEqual(c.expected);
        expect(c.rLocation).toBe(device === "webgpu" ? "gpu-buffer" : "cpu");
      }
    },
  );

  it("the second start reads every file from Cache Storage", async () => {
    server.requests.length = 0;
    const again = await browser.page.evaluate(() =>
      window.loraxsPage.load("/models/tiny-llama/manifest.json", "webgpu"),
    );
    expect(again.timings.downloadedBytes).toBe(0);
    expect(again.timings.cachedFiles).toBe(5);
    expect(server.requests.filter((p) => p.startsWith("/models/"))).toEqual([
      "/models/tiny-llama/manifest.json",
    ]);
  });

  it("auto picks WebGPU with an adapter, and WASM (saying why) without one", async () => {
    const withGpu = await browser.page.evaluate(() => window.loraxsPage.backend("auto"));
    expect(withGpu.device).toBe("webgpu");
    expect(withGpu.reason).toMatch(/fallback adapter|WebGPU adapter/);
    const noGpu = await launch(`${server.url}/`, { gpu: false });
    try {
      const fallback = await noGpu.page.evaluate(() => window.loraxsPage.backend("auto"));
      expect(fallback.device).toBe("wasm");
      expect(fallback.reason).toMatch(/^falling back to wasm: /);
      await expect(noGpu.page.evaluate(() => window.loraxsPage.backend("webgpu"))).rejects.toThrow(
        /no_webgpu|webgpu requested/,
      );
    } finally {
      await noGpu.close();
    }
  });
});
