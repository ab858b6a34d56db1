// What a standard PEFT LoRA adapter folder holds (huggingface/peft `save_pretrained`):
// adapter_config.json + adapter_model.safetensors with tensors named
// `base_model.model.<module>.lora_A.weight` ([r, in]) and `.lora_B.weight` ([out, r]).

export const PEFT_CONFIG_FILE = "adapter_config.json";
export const PEFT_WEIGHTS_FILE = "adapter_model.safetensors";

/** The prefix PEFT puts before a module name in saved LoRA weights. */
export const PEFT_PREFIX = "base_model.model.";

/** PEFT task type by manifest family: a causal LM, or an encoder used for embeddings. */
export const TASK_TYPES = { decoder: "CAUSAL_LM", encoder: "FEATURE_EXTRACTION" } as const;

export function loraKey(module: string, which: "A" | "B"): string {
  return `${PEFT_PREFIX}${module}.lora_${which}.weight`;
}

/** Splits a saved LoRA tensor name into module and A/B (also with an adapter name: `lora_A.default.weight`). */
export function parseLoraKey(key: string): { module: string; which: "A" | "B" } | undefined {
  const m = /^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$/.exec(key);
  return m ? { module: m[1] as string, which: m[2] as "A" | "B" } : undefined;
}

/** The LoraConfig fields the CLI writes and reads. */
export interface PeftLoraConfig {
  peft_type: string;
  task_type?: string | null;
  base_model_name_or_path?: string | null;
  revision?: string | null;
  r: number;
  lora_alpha: number;
  target_modules: string[] | string;
  lora_dropout?: number;
  bias?: string;
  fan_in_fan_out?: boolean;
  use_rslora?: boolean;
  use_dora?: boolean;
  rank_pattern?: Record<string, number>;
  alpha_pattern?: Record<string, number>;
  [key: string]: unknown;
}

/**
 * The entry of a PEFT `rank_pattern` / `alpha_pattern` that applies to a module, matched as PEFT
 * does: the key is a regex that must match a suffix of the module name on a dot boundary.
 */
export function patternValue(
  pattern: Record<string, number> | undefined,
  module: string,
): number | undefined {
  for (const [key, value] of Object.entries(pattern ?? {})) {
    if (new RegExp(`^(.*\\.)?(${key})$`).test(module)) return value;
  }
  return undefined;
}

/** PEFT's scale of B · A: alpha / r, or alpha / √r with rsLoRA. */
export function loraScale(config: PeftLoraConfig, module: string): number {
  const r = patternValue(config.rank_pattern, module) ?? config.r;
  const alpha = patternValue(config.alpha_pattern, module) ?? config.lora_alpha;
  return config.use_rslora ? alpha / Math.sqrt(r) : alpha / r;
}
