// The two conversions between a LoRA-XS module (up · R · down) and a standard LoRA module
// (B · A · scale), in float64.

import { frobenius, type Matrix, matmul, solveRightSpd, subtract, transpose } from "./linalg.ts";

/** LoRA-XS → LoRA with scale 1: A = R · down (`r × in`), B = up (`out × r`). */
export function loraFromLoraXs(R: Matrix, down: Matrix, up: Matrix): { A: Matrix; B: Matrix } {
  return { A: matmul(R, down), B: up };
}

export interface Projection {
  /** argmin ‖ΔW − up · R · down‖_F, `r × r`. */
  R: Matrix;
  /** ‖ΔW‖_F. */
  norm: number;
  /** ‖ΔW − up · R · down‖_F. */
  residual: number;
}

/**
 * Projects ΔW (`out × in`) onto the LoRA-XS subspace of one module:
 * R = (upᵀ up)⁻¹ upᵀ ΔW downᵀ (down downᵀ)⁻¹, the least-squares solution (with orthonormal
 * `up` this is upᵀ ΔW down⁺). ΔW is given as its LoRA factors `B · A · scale` and never formed
 * for R; it is formed once for the residual.
 */
export function projectLora(
  A: Matrix,
  B: Matrix,
  loraScale: number,
  down: Matrix,
  up: Matrix,
  module: string,
): Projection {
  const upT = transpose(up); // [r, out]
  const downT = transpose(down); // [in, r]
  const middle = matmul(matmul(matmul(upT, B), A), downT); // upᵀ B A downᵀ: [r, r]
  for (let i = 0; i < middle.data.length; i++)
    middle.data[i] = (middle.data[i] as number) * loraScale;
  const gramUp = matmul(upT, up); // [r, r]
  const gramDown = matmul(down, downT); // [r, r]
  // X = middle · gramDown⁻¹, then R = gramUp⁻¹ · X = (Xᵀ · gramUp⁻¹)ᵀ (both Gram matrices are symmetric).
  const X = solveRightSpd(middle, gramDown, `${module}: down · downᵀ`);
  const R = transpose(solveRightSpd(transpose(X), gramUp, `${module}: upᵀ · up`));
  const deltaW = matmul(B, A); // [out, in]
  for (let i = 0; i < deltaW.data.length; i++)
    deltaW.data[i] = (deltaW.data[i] as number) * loraScale;
  const residual = frobenius(subtract(deltaW, matmul(matmul(up, R), down)));
  return { R, norm: frobenius(deltaW), residual };
}

/** ‖ΔW − up · R · down‖_F for a given R (e.g. after rounding R to the stored dtype). */
export function residualOf(
  A: Matrix,
  B: Matrix,
  loraScale: number,
  down: Matrix,
  up: Matrix,
  R: Matrix,
): number {
  const deltaW = matmul(B, A);
  for (let i = 0; i < deltaW.data.length; i++)
    deltaW.data[i] = (deltaW.data[i] as number) * loraScale;
  return frobenius(subtract(deltaW, matmul(matmul(up, R), down)));
}
