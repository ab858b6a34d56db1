// esbuild for the GPU carries: one ESM file for Node 22+ with the client bundled in and
// onnxruntime left to the package the carry provides (`require` made from import.meta.url).
import { build } from "esbuild";

/** Bundles `entry` into `outfile`; `options` add to (or replace) the esbuild options. */
export const bundleForNode = (entry, outfile, options = {}) =>
  build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node22",
    external: ["onnxruntime-web", "onnxruntime-web/*", "onnxruntime-node"],
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: "warning",
    ...options,
  });
