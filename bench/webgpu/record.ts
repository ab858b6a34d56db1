// Writes the WebGPU figures of a bench:webgpu report (webgpu.json, made on the GPU machine) into
// bench/results/client-graph.json, beside bench:client's figures. The figures are computed from the
// report's rows (summary.ts), so a report made before a change of definition records the same way.
//   node --experimental-strip-types bench/webgpu/record.ts <webgpu.json>
import { readFileSync } from "node:fs";
import { recordWebGpu } from "../client-graph-results.ts";
import { type SummaryRow, webGpuSummary } from "./summary.ts";

const path = process.argv[2];
if (path === undefined) throw new Error("usage: record.ts <webgpu.json>");
const report = JSON.parse(readFileSync(path, "utf8")) as {
  rows?: SummaryRow[];
  summary?: { device: string; date: string };
};
if (report.rows === undefined || report.summary === undefined)
  throw new Error(`${path} is not a bench:webgpu report with the new graph's rows`);
const summary = webGpuSummary(report.rows, report.summary.device, report.summary.date);
if (summary.webgpu_decode_tok_s.new === null)
  throw new Error(`${path}: no WebGPU client row for the new graph; nothing recorded`);
recordWebGpu(summary);
console.log(JSON.stringify(summary));
