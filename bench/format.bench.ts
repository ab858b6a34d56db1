// Adapter codec throughput: decode + full validation into Float32Array, and encode, for a
// 1 MiB-of-data adapter (128 modules × 64 × 64, the size of a large real one) in each dtype.
//
//   npm run bench:format            (RUNS=n timed runs; BENCH_CLOCK=wall for wall-clock time)
//
// Prints the median of the timed runs as MB/s of file bytes, with two references: a plain copy
// of the same bytes (the ceiling) and a naive per-element DataView decoder (what the table-driven
// loop replaces).

import { median } from "../harness/stats.ts";
import { type Dtype, decodeAdapter, encodeAdapter, fromF16 } from "../src/format/index.ts";

const RUNS = Number(process.env.RUNS ?? 60);
const WARMUP = 10;
const M = 128;
const r = 64;

/**
 * Median seconds of `fn` over RUNS runs after WARMUP, in process CPU time (user + system), so
 * that time spent descheduled on a busy machine does not count; BENCH_CLOCK=wall for wall time.
 */
const WALL = process.env.BENCH_CLOCK === "wall";
function time(fn: () => unknown): number {
  for (let i = 0; i < WARMUP; i++) fn();
  const t: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const c = process.cpuUsage();
    const s = performance.now();
    fn();
    const u = process.cpuUsage(c);
    t.push(WALL ? (performance.now() - s) / 1000 : (u.user + u.system) / 1e6);
  }
  return median(t);
}

let seed = 1;
const R = new Float32Array(M * r * r);
for (let i = 0; i < R.length; i++) {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  R[i] = (seed / 2 ** 32 - 0.5) * 0.04;
}
const input = {
  model: "smollm2-135m",
  factors: `sha256:${"ab".repeat(32)}`,
  rank: r,
  modules: M,
  R,
};

/** Per-element DataView decode of the F16 data, no validation: the naive way. */
function naiveF16(bytes: Uint8Array): Float32Array {
  const n = new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
  const view = new DataView(bytes.buffer, bytes.byteOffset + 8 + n);
  const out = new Float32Array((bytes.length - 8 - n) / 2);
  for (let i = 0; i < out.length; i++) out[i] = fromF16(view.getUint16(2 * i, true));
  return out;
}

const rows: string[][] = [];
const mbps = (bytes: number, s: number) => (bytes / 1e6 / s).toFixed(0);
const ms = (s: number) => (s * 1000).toFixed(3);

for (const dtype of ["F16", "BF16", "F32"] as Dtype[]) {
  const bytes = encodeAdapter(input, { dtype });
  const dec = time(() => decodeAdapter(bytes, { rank: r, modules: M }));
  const encT = time(() => encodeAdapter(input, { dtype }));
  const copy = time(() => bytes.slice());
  rows.push([
    dtype,
    String(bytes.length),
    ms(dec),
    mbps(bytes.length, dec),
    ms(encT),
    mbps(bytes.length, encT),
    mbps(bytes.length, copy),
  ]);
  if (dtype === "F16") {
    const naive = time(() => naiveF16(bytes));
    rows.push([
      "F16 naive DataView decode (no checks)",
      String(bytes.length),
      ms(naive),
      mbps(bytes.length, naive),
      "",
      "",
      "",
    ]);
  }
}

// A real small adapter: SmolLM2-135M, q and v adapted at r = 16 (R [60, 16, 16], 31 KB).
{
  const smallInput = { ...input, rank: 16, modules: 60, R: R.subarray(0, 60 * 16 * 16) };
  const small = encodeAdapter(smallInput);
  const dec = time(() => decodeAdapter(small, { rank: 16, modules: 60 }));
  const encT = time(() => encodeAdapter(smallInput));
  const copy = time(() => small.slice());
  const row = [ms(dec), mbps(small.length, dec), ms(encT), mbps(small.length, encT)];
  rows.push(["F16 [60, 16, 16]", String(small.length), ...row, mbps(small.length, copy)]);
}

const head = [
  "adapter",
  "file bytes",
  "decode ms",
  "decode MB/s",
  "encode ms",
  "encode MB/s",
  "copy MB/s",
];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? "").length)));
const line = (cells: string[]) =>
  `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
console.log(
  `Node ${process.version}, median of ${RUNS} runs, ${WALL ? "wall" : "CPU"} time, R = [${M}, ${r}, ${r}]`,
);
console.log(line(head));
console.log(line(widths.map((w) => "-".repeat(w))));
for (const row of rows) console.log(line(row));
