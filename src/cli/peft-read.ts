// Reading a PEFT LoRA folder: its config (only what an additive LoRA update means) and its
// lora_A / lora_B pairs by module.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { InvalidInputError } from "./errors.ts";
import { type Matrix, matrix } from "./linalg.ts";
import { PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, type PeftLoraConfig, parseLoraKey } from "./peft.ts";
import { readSafetensors, type TensorView, toFloat64 } from "./safetensors.ts";

/** One module's LoRA factors: ΔW = B · A · scale. */
export interface LoraPair {
  A: Matrix; // [k, in]
  B: Matrix; // [out, k]
}

/** adapter_config.json, rejecting what is not an additive B · A update of nn.Linear weights. */
export async function readPeftConfig(dir: string): Promise<PeftLoraConfig> {
  const path = join(dir, PEFT_CONFIG_FILE);
  let config: PeftLoraConfig;
  try {
    config = JSON.parse(await readFile(path, "utf8")) as PeftLoraConfig;
  } catch (error) {
    const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new InvalidInputError(
      `cannot read PEFT config ${path}: ${why}`,
      "--peft names a folder written by PeftModel.save_pretrained",
    );
  }
  const bad = (field: string, value: unknown, want: string): never => {
    throw new InvalidInputError(
      `${path}: ${field} is ${JSON.stringify(value)}; import-peft needs ${want}`,
    );
  };
  if (config.peft_type !== "LORA") bad("peft_type", config.peft_type, '"LORA"');
  if (!Number.isInteger(config.r) || config.r < 1) bad("r", config.r, "a positive integer");
  if (typeof config.lora_alpha !== "number" || !Number.isFinite(config.lora_alpha)) {
    bad("lora_alpha", config.lora_alpha, "a number");
  }
  if (config.use_dora) {
    bad("use_dora", config.use_dora, "false (DoRA rescales W; it is not an additive update)");
  }
  if (config.fan_in_fan_out)
    bad("fan_in_fan_out", config.fan_in_fan_out, "false (nn.Linear layers)");
  if (config.bias !== undefined && config.bias !== "none") {
    bad("bias", config.bias, '"none" (trained biases are not part of LoRA-XS)');
  }
  return config;
}

/** adapter_model.safetensors grouped by module; each module needs both A and B, 2-D. */
export async function readLoraPairs(dir: string): Promise<Map<string, LoraPair>> {
  const path = join(dir, PEFT_WEIGHTS_FILE);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (error) {
    throw new InvalidInputError(
      `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      "only safetensors PEFT weights are read; re-save with save_pretrained(dir, safe_serialization=True)",
    );
  }
  const parts = new Map<string, { A?: TensorView; B?: TensorView }>();
  for (const [name, t] of readSafetensors(bytes, path).tensors) {
    const key = parseLoraKey(name);
    if (!key) {
      throw new InvalidInputError(
        `${path}: tensor ${name} is not a LoRA weight (…lora_A.weight / …lora_B.weight)`,
        "modules_to_save, embeddings and biases cannot be imported into LoRA-XS",
      );
    }
    if (t.shape.length !== 2) {
      throw new InvalidInputError(
        `${path}: tensor ${name} has shape ${JSON.stringify(t.shape)}; expected 2-D`,
      );
    }
    const entry = parts.get(key.module) ?? {};
    entry[key.which] = t;
    parts.set(key.module, entry);
  }
  const pairs = new Map<string, LoraPair>();
  for (const [module, { A, B }] of parts) {
    if (!A || !B) {
      const [has, lacks] = A ? ["A", "B"] : ["B", "A"];
      throw new InvalidInputError(`${path}: module ${module} has lora_${has} but no lora_${lacks}`);
    }
    pairs.set(module, {
      A: matrix(A.shape[0] as number, A.shape[1] as number, toFloat64(A)),
      B: matrix(B.shape[0] as number, B.shape[1] as number, toFloat64(B)),
    });
  }
  if (pairs.size === 0) throw new InvalidInputError(`${path}: no lora_A / lora_B tensors`);
  return pairs;
}
