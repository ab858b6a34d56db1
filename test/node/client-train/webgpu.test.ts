// The training step in Chromium: onnxruntime-web on WebGPU (SwiftShader here: correctness,
// not speed) and on WASM, against PyTorch autograd's loss and dL/dR for the reference batch.
import { join } from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUNDLE_DIR, buildPage } from "../../../harness/browser/build.ts";
import { type Browser, launch } from "../../../harness/browser/chromium.ts";
import { type PageServer, startPageServer } from "../../../harness/browser/server.ts";
import { CHROMIUM_BROWSER, canRun } from "../../shared/requirements.ts";
import { ensureTrainModel } from "./model.ts";

/** Same bounds as train.test.ts: WebGPU on SwiftShader measured 7.9e-8 (loss) and 3.5e-6 (gradient). */
const LOSS_REL_TOL = 1e-5;
const GRAD_REL_TOL = 1e-4;

interface StepReport {
  backend: string;
  lossRelError: number;
  gradRelError: number;
  stepMs: number;
}

describe.skipIf(!canRun("training step in Chromium", CHROMIUM_BROWSER))(
  "training step in Chromium",
  () => {
    let server: PageServer;
    let browser: Browser;
    beforeAll(async () => {
      const dir = await ensureTrainModel();
      await buildPage();
      await build({
        entryPoints: [join(import.meta.dirname, "browser-entry.ts")],
        outfile: join(BUNDLE_DIR, "train-page.mjs"),
        bundle: true,
        format: "esm",
        platform: "browser",
        target: "es2022",
        external: ["onnxruntime-web", "onnxruntime-web/*", "onnxruntime-node", "node:*"],
        logLevel: "warning",
      });
      server = await startPageServer({ "tiny-llama-train": dir });
      browser = await launch(`${server.url}/index.html`);
      await browser.page.addScriptTag({ type: "module", url: "/bundle/train-page.mjs" });
      await browser.page.waitForFunction(() => "loraxsTrain" in window);
    });
    afterAll(async () => {
      await browser?.close();
      await server?.close();
    });

    it.each(["webgpu", "wasm"])("%s: loss and dL/dR match PyTorch autograd", async (device) => {
      const r = (await browser.page.evaluate(
        (d) =>
          (
            window as unknown as {
              loraxsTrain: { step(d: string, url: string): Promise<StepReport> };
            }
          ).loraxsTrain.step(d, "/models/tiny-llama-train"),
        device,
      )) as StepReport;
      expect(r.backend).toBe(device);
      expect(r.lossRelError).toBeLessThan(LOSS_REL_TOL);
      expect(r.gradRelError).toBeLessThan(GRAD_REL_TOL);
    });
  },
);
