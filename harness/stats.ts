// The statistics every timing shares: the benchmarks and the harness's browser page (one median, one round).

/** The middle value of `xs`, or the mean of the two middle values for an even count (NaN for none). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  if (s.length === 0) return Number.NaN;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** `x` rounded to `d` decimals. */
export const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
