// Writes a model's WebGPU figures from a bench:webgpu report made on its own prepared folder
// (bench/gemma3/client-gpu.sh webgpu: the client rows only) into bench/results/webgpu-<id>.json,
// which bench/models.bench.ts reads as `webgpu_decode_tok_s`.
//   node --experimental-strip-types bench/gemma3/record-webgpu.ts <webgpu.json> [--model gemma3-270m]
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { SummaryRow } from "../webgpu/summary.ts";

const { values: args, positionals } = parseArgs({
  options: { model: { type: "string", default: "gemma3-270m" } },
  allowPositionals: true,
});
const path = positionals[0];
if (path === undefined) throw new Error("usage: record-webgpu.ts <webgpu.json> [--model id]");
const report = JSON.parse(readFileSync(path, "utf8")) as {
  rows?: SummaryRow[];
  tokens?: number;
  prompt?: number;
  summary?: { device: string; date: string };
};
/** Mean decode tokens/s of the client's row for R (the folder's default graph for webgpu). */
const mean = (r: string): number | null => {
  const row = report.rows?.find((x) => x.runtime === "loraxs client" && x.R === r);
  if (row === undefined || row.runs.length === 0) return null;
  return row.runs.reduce((s, x) => s + x.tokensPerSecond, 0) / row.runs.length;
};
const personal = mean("user's");
const base = mean("0 (base)");
if (personal === null || report.summary === undefined)
  throw new Error(`${path}: no client row with the user's R; nothing recorded`);
const out = {
  model: args.model,
  decode_tok_s: Math.round(personal * 100) / 100,
  base_decode_tok_s: base === null ? null : Math.round(base * 100) / 100,
  personal_over_base: base ? personal / base : null,
  prompt_tokens: report.prompt ?? null,
  new_tokens: report.tokens ?? null,
  device: report.summary.device,
  date: report.summary.date,
  report: path,
};
const file = join(import.meta.dirname, "..", "results", `webgpu-${args.model}.json`);
writeFileSync(file, `${JSON.stringify(out, null, 1)}\n`);
console.log(JSON.stringify(out));
