// Writes the WebGPU figures of a bench:webgpu report (webgpu.json, made on the GPU machine) into
// bench/results/client-graph.json, beside bench:client's figures.
//   node --experimental-strip-types bench/webgpu/record.ts <webgpu.json>
import { readFileSync } from "node:fs";
import { recordWebGpu } from "../client-graph-results.ts";

const path = process.argv[2];
if (path === undefined) throw new Error("usage: record.ts <webgpu.json>");
const report = JSON.parse(readFileSync(path, "utf8")) as {
  summary?: Parameters<typeof recordWebGpu>[0];
};
if (report.summary === undefined)
  throw new Error(`${path} has no summary (made before q4/ rows existed?)`);
if (report.summary.webgpu_decode_tok_s.new === null)
  throw new Error(`${path}: no WebGPU row for the new graph; nothing recorded`);
recordWebGpu(report.summary);
console.log(JSON.stringify(report.summary));
