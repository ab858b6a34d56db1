/** Summary statistics of a tensor's values (what `loraxs inspect` prints). */
export interface ValueStats {
  count: number;
  min: number;
  max: number;
  mean: number;
  /** Population standard deviation. */
  std: number;
  /** ‖x‖₂ over all values. */
  norm: number;
  /** Fraction of values that are exactly zero (±0). */
  zeros: number;
}

/** One pass, Welford's update for mean and variance (stable for values near 1e-5). */
export function valueStats(values: ArrayLike<number>): ValueStats {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let mean = 0;
  let m2 = 0;
  let squares = 0;
  let zeros = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i] as number;
    if (x < min) min = x;
    if (x > max) max = x;
    const delta = x - mean;
    mean += delta / (i + 1);
    m2 += delta * (x - mean);
    squares += x * x;
    if (x === 0) zeros++;
  }
  const count = values.length;
  if (count === 0) return { count, min: 0, max: 0, mean: 0, std: 0, norm: 0, zeros: 0 };
  return {
    count,
    min,
    max,
    mean,
    std: Math.sqrt(m2 / count),
    norm: Math.sqrt(squares),
    zeros: zeros / count,
  };
}

/** A number for a human: 4 significant digits, exponent form when small or large. */
export function formatNumber(x: number): string {
  if (x === 0) return "0";
  const a = Math.abs(x);
  return a < 1e-3 || a >= 1e5 ? x.toExponential(3) : Number(x.toPrecision(4)).toString();
}
