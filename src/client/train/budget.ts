// Memory budget -> step shape. The step graph has a static [batch, seq]; a client that has
// several exported shapes (or a prepare run choosing one) picks the largest that fits.
import { ClientError } from "../errors.ts";
import type { ClientManifest } from "../manifest.ts";

/**
 * Rough peak bytes of one training step: the weights twice (session copy + backward layouts),
 * saved activations per layer (hidden states x ~20 fp32 tensors, attention scores x 3), and the
 * [B, T, vocab] logits x 4 (logits, exp, one-hot, gradient). Calibrated on SmolLM2-135M with
 * onnxruntime CPU: 2.1 GB measured at B1/T256, this gives 1.9 GB.
 */
export function estimateStepBytes(
  config: ClientManifest["config"],
  weightBytes: number,
  batch: number,
  seq: number,
): number {
  const F32 = 4;
  const heads = config.num_attention_heads ?? 1;
  const hidden = batch * seq * config.num_layers * config.hidden_size * F32 * 20;
  const scores = batch * heads * seq * seq * config.num_layers * F32 * 3;
  const logits = batch * seq * config.vocab_size * F32 * 4;
  return 2 * weightBytes + hidden + scores + logits;
}

export interface StepShape {
  batch: number;
  seq: number;
}

/** The shape with the most tokens whose estimate fits `budgetBytes`; an error names the smallest need. */
export function chooseStepShape(
  budgetBytes: number,
  config: ClientManifest["config"],
  weightBytes: number,
  shapes: readonly StepShape[],
): StepShape & { estimateBytes: number } {
  const rated = shapes
    .map((s) => ({ ...s, estimateBytes: estimateStepBytes(config, weightBytes, s.batch, s.seq) }))
    .sort((a, b) => b.batch * b.seq - a.batch * a.seq);
  const fit = rated.find((s) => s.estimateBytes <= budgetBytes);
  if (fit === undefined) {
    const least = Math.min(...rated.map((s) => s.estimateBytes));
    throw new ClientError(
      "over_memory_budget",
      `memory budget ${budgetBytes} bytes is below every step shape's estimate (smallest needs ${Math.ceil(least)} bytes for ${JSON.stringify(shapes)})`,
    );
  }
  return fit;
}
