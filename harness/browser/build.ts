// Bundles the client for the test page (esbuild): onnxruntime-web stays external (the page's
// import map points it at the served dist files), Node-only imports are never reached.
import { join, resolve } from "node:path";
import { build } from "esbuild";

export const BROWSER_DIR = resolve(import.meta.dirname);
export const REPO = resolve(BROWSER_DIR, "../..");
export const BUNDLE_DIR = join(REPO, ".cache", "browser");

export async function buildPage(): Promise<string> {
  await build({
    entryPoints: [join(BROWSER_DIR, "page", "entry.ts")],
    outfile: join(BUNDLE_DIR, "page.mjs"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    sourcemap: true,
    external: ["onnxruntime-web", "onnxruntime-web/*", "onnxruntime-node", "node:*"],
    logLevel: "warning",
  });
  return BUNDLE_DIR;
}
