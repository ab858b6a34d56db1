import { mkdir, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { expectationsFor, type Manifest } from "../../manifest/index.ts";
import { decodeOrFail, readInputFile } from "../adapter-file.ts";
import { requireOption } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT, UsageError } from "../errors.ts";
import { loadFactors } from "../factors.ts";
import { matrix } from "../linalg.ts";
import { loadModel } from "../model.ts";
import {
  loraKey,
  PEFT_CONFIG_FILE,
  PEFT_WEIGHTS_FILE,
  type PeftLoraConfig,
  TASK_TYPES,
} from "../peft.ts";
import { loraFromLoraXs } from "../projection.ts";
import { encodeSafetensorsF32, type F32Tensor } from "../safetensors.ts";

export const exportPeft: Command = {
  name: "export-peft",
  summary: "Write an adapter as a standard PEFT LoRA adapter (exact: same weights, scale 1).",
  positionals: [],
  options: {
    adapter: { type: "string", value: "FILE", description: "LoRA-XS adapter (.safetensors)" },
    model: {
      type: "string",
      value: "MANIFEST",
      description: "the model's manifest.json (factors.safetensors sits next to it)",
    },
    out: { type: "string", value: "DIR", description: "output folder (created)" },
    "full-names": {
      type: "boolean",
      description: "list full module names in target_modules instead of short names",
    },
    force: { type: "boolean", description: "overwrite an existing adapter in --out" },
  },
  details: `Writes DIR/adapter_config.json and DIR/adapter_model.safetensors (F32) with, per module,
  lora_A = R · down  [r, in]    lora_B = up  [out, r]    lora_alpha = r (scale 1)
so that W + lora_B · lora_A = W + up · R · down exactly (up to float32 rounding). Load it with
  PeftModel.from_pretrained(base_model, DIR)
An encoder adapter's classification head is not part of a LoRA: it is written beside it as
DIR/loraxs_head.safetensors (head.weight, head.bias) and named on stderr.`,
  async run(args, io) {
    const adapterPath = requireOption(args, "adapter", "export-peft");
    const manifestPath = requireOption(args, "model", "export-peft");
    const out = resolve(io.cwd, requireOption(args, "out", "export-peft"));
    const model = await loadModel(manifestPath, io.cwd);
    const file = await readInputFile(adapterPath, io.cwd, "adapter");
    const adapter = decodeOrFail(file.bytes, file.path, expectationsFor(model.manifest));
    const factors = await loadFactors(model);
    if (!args.values.force && (await exists(join(out, PEFT_WEIGHTS_FILE)))) {
      throw new UsageError(
        `${join(out, PEFT_WEIGHTS_FILE)} exists; pass --force to overwrite it`,
        "export-peft",
      );
    }
    const r = adapter.rank;
    const tensors: F32Tensor[] = [];
    for (const [i, m] of factors.modules.entries()) {
      const R = matrix(r, r, Float64Array.from(adapter.R.subarray(i * r * r, (i + 1) * r * r)));
      const { A, B } = loraFromLoraXs(R, m.down, m.up);
      tensors.push({ name: loraKey(m.name, "A"), shape: [A.rows, A.cols], values: A.data });
      tensors.push({ name: loraKey(m.name, "B"), shape: [B.rows, B.cols], values: B.data });
    }
    const names = model.manifest.modules.map((m) => m.name);
    const config = peftConfig(
      model.manifest,
      args.values["full-names"] ? names : shortNames(names),
    );
    await mkdir(out, { recursive: true });
    const weights = encodeSafetensorsF32(tensors, {
      format: "pt",
      loraxs_model: adapter.model,
      loraxs_factors: adapter.factors,
    });
    await writeFile(join(out, PEFT_WEIGHTS_FILE), weights);
    await writeFile(join(out, PEFT_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
    io.stdout(
      `wrote ${join(out, PEFT_CONFIG_FILE)}\nwrote ${join(out, PEFT_WEIGHTS_FILE)} (${tensors.length} tensors, ${weights.length} bytes)\n`,
    );
    if (adapter.head) {
      const head = encodeSafetensorsF32(
        [
          {
            name: "head.weight",
            shape: [adapter.head.classes, adapter.head.hidden],
            values: adapter.head.weight,
          },
          { name: "head.bias", shape: [adapter.head.classes], values: adapter.head.bias },
        ],
        adapter.head.labels ? { labels: JSON.stringify(adapter.head.labels) } : {},
      );
      await writeFile(join(out, "loraxs_head.safetensors"), head);
      io.stderr(
        `note: the adapter's classification head is not part of a LoRA; wrote it to ${join(out, "loraxs_head.safetensors")}\n`,
      );
    }
    return EXIT.ok;
  },
};

/** The last component of each module name, deduplicated in order (`q_proj`, `v_proj`). */
export function shortNames(names: readonly string[]): string[] {
  return [...new Set(names.map((n) => n.slice(n.lastIndexOf(".") + 1)))];
}

/** Where the base model came from, as PEFT records it. */
export function baseModelName(manifest: Manifest): string {
  const s = manifest.source as Record<string, unknown>;
  const text = (k: string) =>
    typeof s[k] === "string" && s[k] !== "" ? (s[k] as string) : undefined;
  return text("repo") ?? text("path") ?? text("package") ?? text("file") ?? manifest.id;
}

function peftConfig(manifest: Manifest, targets: string[]): PeftLoraConfig {
  const revision = manifest.source.revision;
  return {
    peft_type: "LORA",
    task_type: TASK_TYPES[manifest.family],
    base_model_name_or_path: baseModelName(manifest),
    revision: typeof revision === "string" ? revision : null,
    r: manifest.rank,
    lora_alpha: manifest.rank, // scale = alpha / r = 1: R is folded into lora_A
    target_modules: targets,
    lora_dropout: 0,
    bias: "none",
    fan_in_fan_out: false,
    use_rslora: false,
    use_dora: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    rank_pattern: {},
    alpha_pattern: {},
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
