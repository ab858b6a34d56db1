// Builds .cache/gpu-carry/ (what bench/client-gpu.ts needs on the GPU machine, which has no
// Node): Node 24 (xz), Dawn's `webgpu` binding (npm pack), onnxruntime-web's WebGPU build laid
// out as a package, Debian's Vulkan loader (.debs), SmolLM2's tokenizer files, the bundled
// benchmark and setup.sh. Run: node bench/client-gpu-carry.mjs   (about 40 MiB)
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { bundleForNode } from "./webgpu/bundle.mjs";

const REPO = resolve(import.meta.dirname, "..");
const OUT = join(REPO, ".cache", "gpu-carry");
const ORT_DIST = join(REPO, "node_modules", "onnxruntime-web", "dist");
const sh = (cmd, args, opts = {}) =>
  execFileSync(cmd, args, { stdio: ["ignore", "pipe", "inherit"], ...opts });
const xz = (from, to) =>
  writeFileSync(to, sh("xz", ["-6", "-T0", "-c", from], { maxBuffer: 1 << 30 }));

mkdirSync(join(OUT, "webgpu"), { recursive: true });
mkdirSync(join(OUT, "node_modules", "onnxruntime-web", "dist"), { recursive: true });
mkdirSync(join(OUT, "debs"), { recursive: true });
mkdirSync(join(OUT, "tok"), { recursive: true });

if (!existsSync(join(OUT, "node.xz"))) {
  const tmp = mkdtempSync(join(tmpdir(), "carry-"));
  copyFileSync(join(REPO, "node_modules", "node", "bin", "node"), join(tmp, "node"));
  sh("strip", [join(tmp, "node")]);
  xz(join(tmp, "node"), join(OUT, "node.xz"));
  rmSync(tmp, { recursive: true, force: true });
}
if (!existsSync(join(OUT, "webgpu", "dawn.node.xz"))) {
  const tmp = mkdtempSync(join(tmpdir(), "carry-"));
  sh("npm", ["pack", "webgpu@0.6.2", "--silent"], { cwd: tmp });
  sh("tar", ["xzf", "webgpu-0.6.2.tgz"], { cwd: tmp });
  for (const f of ["index.js", "package.json"])
    copyFileSync(join(tmp, "package", f), join(OUT, "webgpu", f));
  xz(join(tmp, "package", "dist", "linux-x64", "dawn.node"), join(OUT, "webgpu", "dawn.node.xz"));
  rmSync(tmp, { recursive: true, force: true });
}
const ortOut = join(OUT, "node_modules", "onnxruntime-web");
for (const f of ["ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs"])
  copyFileSync(join(ORT_DIST, f), join(ortOut, "dist", f));
if (!existsSync(join(ortOut, "dist", "ort-wasm-simd-threaded.asyncify.wasm.xz"))) {
  xz(
    join(ORT_DIST, "ort-wasm-simd-threaded.asyncify.wasm"),
    join(ortOut, "dist", "ort-wasm-simd-threaded.asyncify.wasm.xz"),
  );
}
writeFileSync(
  join(ortOut, "package.json"),
  JSON.stringify({
    name: "onnxruntime-web",
    version: "1.30.0",
    type: "module",
    exports: { ".": "./dist/ort.webgpu.min.mjs", "./webgpu": "./dist/ort.webgpu.min.mjs" },
  }),
);
if (readdirSync(join(OUT, "debs")).length === 0) {
  const lists = mkdtempSync(join(tmpdir(), "apt-"));
  mkdirSync(join(lists, "partial"));
  const o = [
    "-oAPT::Architecture=amd64",
    "-oAPT::Architectures=amd64",
    `-oDir::State::Lists=${lists}`,
  ];
  sh("apt-get", [...o, "update"]);
  sh(
    "apt-get",
    [
      ...o,
      "download",
      "libvulkan1",
      "libegl1",
      "libglvnd0",
      "libopengl0",
      "libgl1",
      "libglx0",
      "libgles2",
    ],
    { cwd: join(OUT, "debs") },
  );
  rmSync(lists, { recursive: true, force: true });
}
const tok = [
  join(REPO, ".cache", "models", "smollm2-135m"),
  join(REPO, ".cache", "models", "tiny-llama"),
].find((d) => existsSync(join(d, "tokenizer.json")));
if (tok === undefined)
  throw new Error("no SmolLM2 tokenizer in .cache/models (run the tiny-llama prepare first)");
for (const f of ["tokenizer.json", "tokenizer_config.json"])
  copyFileSync(join(tok, f), join(OUT, "tok", f));
await bundleForNode(join(REPO, "bench", "client-gpu.ts"), join(OUT, "bench.mjs"));
writeFileSync(
  join(OUT, "setup.sh"),
  `#!/bin/bash
# Unpack in place: node, dawn.node, the wasm; install the Vulkan loader.
set -e
C=$(cd "$(dirname "$0")" && pwd)
for f in "$C"/debs/*.deb; do dpkg -x "$f" /; done; ldconfig
xz -dc "$C/node.xz" > /tmp/node24 && chmod +x /tmp/node24
mkdir -p /tmp/wg/webgpu/dist/linux-x64 && cp "$C"/webgpu/index.js "$C"/webgpu/package.json /tmp/wg/webgpu/
xz -dc "$C/webgpu/dawn.node.xz" > /tmp/wg/webgpu/dist/linux-x64/dawn.node
rm -rf /tmp/carry && cp -r "$C" /tmp/carry
xz -dc "$C/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.asyncify.wasm.xz" > /tmp/carry/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.asyncify.wasm
`,
);
console.log(sh("du", ["-sh", OUT]).toString());
