// Builds the demo page into .cache/web (the Worker's static assets): esbuild bundles web/src,
// static files are copied, and onnxruntime-web's runtime files go to /ort/.
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { formatBytes, reportFailure, ScriptError } from "./edge/log.mjs";
import { root, webOut } from "./edge/paths.mjs";

const web = join(root, "web");
const ortDist = join(root, "node_modules", "onnxruntime-web", "dist");

/** Cloudflare serves static assets up to 25 MiB each; bigger files fail `wrangler deploy`. */
const MAX_ASSET_BYTES = 25 * 1024 * 1024;

/**
 * The browser builds of onnxruntime-web whose .wasm fits under MAX_ASSET_BYTES: the JSPI build
 * (WebGPU + WASM, 17 MB) stands in for the default WebGPU build (asyncify, 27 MB), and the plain
 * WASM build (14 MB) for the all-in-one import (JSEP, 28 MB).
 */
const ORT_BUILDS = {
  "onnxruntime-web/webgpu": "ort.jspi.min.mjs",
  "onnxruntime-web": "ort.wasm.min.mjs",
};
const ORT_RUNTIME_FILES = [
  "ort-wasm-simd-threaded.jspi.mjs",
  "ort-wasm-simd-threaded.jspi.wasm",
  "ort-wasm-simd-threaded.mjs",
  "ort-wasm-simd-threaded.wasm",
];
const STATIC_FILES = ["index.html", "styles.css", "_headers"];

/** Points the client's onnxruntime-web imports at the builds listed in ORT_BUILDS. */
const ortBuilds = {
  name: "ort-builds",
  setup(b) {
    b.onResolve({ filter: /^onnxruntime-web(\/webgpu)?$/ }, (args) => ({
      path: join(ortDist, ORT_BUILDS[args.path]),
    }));
    // Node-only modules the client imports behind isNode() checks.
    b.onResolve({ filter: /^(node:.*|onnxruntime-node)$/ }, (args) => ({
      path: args.path,
      external: true,
    }));
  },
};

/** Cleans the output folder (so no local demo-config.json survives into a deploy) and builds. */
export async function buildWeb({ out = webOut, minify = true } = {}) {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, "ort"), { recursive: true });
  for (const name of STATIC_FILES) copyFileSync(join(web, name), join(out, name));
  for (const name of ORT_RUNTIME_FILES) copyFileSync(join(ortDist, name), join(out, "ort", name));
  const result = await build({
    entryPoints: [join(web, "src", "main.ts")],
    outfile: join(out, "app.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify,
    sourcemap: true,
    logLevel: "warning",
    plugins: [ortBuilds],
    metafile: true,
  });
  let total = 0;
  for (const name of listFiles(out)) {
    const bytes = statSync(name).size;
    total += bytes;
    if (bytes > MAX_ASSET_BYTES) {
      throw new ScriptError(
        `${name} has ${bytes} bytes; Cloudflare assets are limited to ${MAX_ASSET_BYTES}`,
      );
    }
  }
  const app =
    result.metafile.outputs[Object.keys(result.metafile.outputs).find((k) => k.endsWith("app.js"))];
  return `app.js ${formatBytes(app?.bytes ?? 0)}, ${formatBytes(total)} in all`;
}

function listFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? listFiles(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  buildWeb()
    .then((summary) => console.log(`[build:web] ${webOut}: ${summary}`))
    .catch((error) => reportFailure("build:web", error));
}
