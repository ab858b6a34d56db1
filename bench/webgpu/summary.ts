// The WebGPU figures bench/results/client-graph.json keeps, computed from a bench:webgpu report's
// rows (bench.ts at the end of a run; record.ts again from the saved report).
export interface SummaryRow {
  runtime: string;
  graph: string;
  R: string;
  runs: { tokensPerSecond: number }[];
}

export interface WebGpuSummary {
  webgpu_decode_tok_s: { old: number | null; new: number | null };
  /** The client's personal decode over its R = 0 decode on the new graph: bench:client's definition. */
  personal_over_base_webgpu: number | null;
  /** transformers.js on the new graph without the branch (q4w-plain). */
  tjs_tok_s: number | null;
  device: string;
  date: string;
}

const CLIENT = "loraxs client";
const TJS = "transformers.js 4.3.1";

function meanTokensPerSecond(rows: SummaryRow[], runtime: string, graph: string, r: string) {
  const row = rows.find((x) => x.runtime === runtime && x.graph === graph && x.R === r);
  if (row === undefined || row.runs.length === 0) return null;
  return row.runs.reduce((s, x) => s + x.tokensPerSecond, 0) / row.runs.length;
}

export function webGpuSummary(rows: SummaryRow[], device: string, date: string): WebGpuSummary {
  const personal = meanTokensPerSecond(rows, CLIENT, "q4", "user's");
  const base = meanTokensPerSecond(rows, CLIENT, "q4", "0 (base)");
  return {
    webgpu_decode_tok_s: {
      old: meanTokensPerSecond(rows, CLIENT, "model.onnx", "user's"),
      new: personal,
    },
    personal_over_base_webgpu: personal !== null && base ? personal / base : null,
    tjs_tok_s: meanTokensPerSecond(rows, TJS, "q4/model.q4w-plain.onnx", "none (no branch)"),
    device,
    date,
  };
}
