// The benchmark's table (markdown): medians per row, ratios to the client's base row.
import { median } from "../../harness/stats.ts";
import type { DecodeTiming } from "./raw.ts";

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "–");

export function table(
  rows: { runtime: string; device: string; graph: string; R: string; runs: DecodeTiming[] }[],
  checks: Record<string, number | string>,
  swaps: Record<string, number>,
): string {
  const tps = (r: (typeof rows)[number]) => median(r.runs.map((x) => x.tokensPerSecond));
  // The reference: the plain base model (no LoRA-XS branch) in a bare onnxruntime loop.
  const base =
    rows.find((r) => r.graph === "plain.onnx" && r.runtime.includes("bare")) ??
    rows.find((r) => r.R === "0 (base)");
  const lines = [
    "| runtime | device | graph | R | prefill ms (median) | decode tokens/s (median) | × plain base | runs |",
    "|---|---|---|---|---:|---:|---:|---:|",
  ];
  for (const r of rows) {
    const ratio = base !== undefined && r.device === base.device ? tps(r) / tps(base) : Number.NaN;
    lines.push(
      `| ${r.runtime} | ${r.device} | ${r.graph} | ${r.R} | ${f(median(r.runs.map((x) => x.prefillMs)))} | ${f(tps(r))} | ${f(ratio, 3)} | ${r.runs.length} |`,
    );
  }
  lines.push("", "| swap | ms |", "|---|---:|");
  for (const [k, v] of Object.entries(swaps)) lines.push(`| ${k} | ${f(v, 3)} |`);
  lines.push("", "| check | value |", "|---|---|");
  for (const [k, v] of Object.entries(checks))
    lines.push(`| ${k} | ${typeof v === "number" ? v.toExponential(2) : v} |`);
  return lines.join("\n");
}
