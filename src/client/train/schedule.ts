// Learning rate: linear warm-up from 0, then cosine decay to `minLr` at the last step.

export interface ScheduleOptions {
  lr: number;
  steps: number;
  warmupSteps?: number;
  /** Floor of the cosine, as a fraction of `lr` (default 0.1). */
  minLrRatio?: number;
}

/** Learning rate of step `t` (0-based: the lr used for the t-th update). */
export function learningRate(t: number, o: ScheduleOptions): number {
  const warm = o.warmupSteps ?? 0;
  const floor = o.lr * (o.minLrRatio ?? 0.1);
  if (t < warm) return (o.lr * (t + 1)) / warm;
  const span = Math.max(1, o.steps - warm - 1);
  const progress = Math.min(1, (t - warm) / span);
  return floor + (o.lr - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
}
