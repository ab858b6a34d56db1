// AdamW on one flat Float32Array (R has 15,360 numbers for SmolLM2: plain loops are enough).
// Same formulas as torch.optim.AdamW (decoupled weight decay, bias-corrected moments).
import { ClientError } from "../errors.ts";

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay (torch's AdamW default is 0.01; 0 is plain Adam). */
  weightDecay?: number;
}

export const ADAMW_DEFAULTS = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 } as const;

export class AdamW {
  readonly size: number;
  /** Steps taken so far. */
  t = 0;
  private readonly m: Float64Array;
  private readonly v: Float64Array;
  private readonly beta1: number;
  private readonly beta2: number;
  private readonly eps: number;
  private readonly weightDecay: number;

  constructor(size: number, options: AdamWOptions = {}) {
    this.size = size;
    this.m = new Float64Array(size);
    this.v = new Float64Array(size);
    this.beta1 = options.beta1 ?? ADAMW_DEFAULTS.beta1;
    this.beta2 = options.beta2 ?? ADAMW_DEFAULTS.beta2;
    this.eps = options.eps ?? ADAMW_DEFAULTS.eps;
    this.weightDecay = options.weightDecay ?? ADAMW_DEFAULTS.weightDecay;
    for (const [name, value, lo, hi] of [
      ["beta1", this.beta1, 0, 1],
      ["beta2", this.beta2, 0, 1],
    ] as const) {
      if (!(value >= lo && value < hi)) {
        throw new ClientError("bad_option", `${name} is ${value}; expected in [${lo}, ${hi})`);
      }
    }
  }

  /** One update of `params` in place with gradient `grad` at learning rate `lr`. */
  step(params: Float32Array, grad: Float32Array, lr: number): void {
    if (params.length !== this.size || grad.length !== this.size) {
      throw new ClientError(
        "r_shape_mismatch",
        `AdamW holds ${this.size} values; got params ${params.length}, grad ${grad.length}`,
      );
    }
    this.t += 1;
    const { beta1, beta2, eps } = this;
    const c1 = 1 - beta1 ** this.t;
    const c2 = Math.sqrt(1 - beta2 ** this.t);
    const decay = 1 - lr * this.weightDecay;
    for (let i = 0; i < this.size; i++) {
      const g = grad[i] as number;
      const m = beta1 * (this.m[i] as number) + (1 - beta1) * g;
      const v = beta2 * (this.v[i] as number) + (1 - beta2) * g * g;
      this.m[i] = m;
      this.v[i] = v;
      const p = (params[i] as number) * decay;
      params[i] = p - (lr * (m / c1)) / (Math.sqrt(v) / c2 + eps);
    }
  }
}

/** Global L2 norm of a gradient. */
export function gradNorm(grad: Float32Array): number {
  let s = 0;
  for (let i = 0; i < grad.length; i++) s += (grad[i] as number) ** 2;
  return Math.sqrt(s);
}

/** Scales `grad` in place so its norm is at most `maxNorm` (torch's clip_grad_norm_); returns the norm before. */
export function clipGradNorm(grad: Float32Array, maxNorm: number): number {
  const norm = gradNorm(grad);
  if (Number.isFinite(maxNorm) && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (let i = 0; i < grad.length; i++) grad[i] = (grad[i] as number) * scale;
  }
  return norm;
}
