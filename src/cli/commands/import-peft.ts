import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { type Dtype, encodeAdapter } from "../../format/index.ts";
import { decodeOrFail } from "../adapter-file.ts";
import { choiceOption, optionalOption, requireOption } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT, InvalidInputError, UsageError } from "../errors.ts";
import { loadFactors } from "../factors.ts";
import { frobenius, type Matrix, matmul, matrix } from "../linalg.ts";
import { expectationsOf, loadModel } from "../model.ts";
import {
  loraScale,
  PEFT_CONFIG_FILE,
  PEFT_WEIGHTS_FILE,
  type PeftLoraConfig,
  parseLoraKey,
} from "../peft.ts";
import { projectLora, residualOf } from "../projection.ts";
import { readSafetensors, type TensorView, toFloat64 } from "../safetensors.ts";
import { formatNumber } from "../stats.ts";

const DTYPE_CHOICES = ["f16", "f32", "bf16"] as const;

interface ModuleResult {
  module: string;
  /** ‖ΔW‖_F of the LoRA's update on this module (0 when the LoRA leaves it alone). */
  norm: number;
  /** ‖ΔW − up R down‖_F / ‖ΔW‖_F with the exact (float64) R; 0 when ‖ΔW‖ = 0. */
  residual: number;
  /** The same with R as stored (rounded to the adapter's dtype). */
  residual_stored: number;
}

export const importPeft: Command = {
  name: "import-peft",
  summary:
    "Project a standard PEFT LoRA adapter onto the model's LoRA-XS subspace and write an adapter.",
  positionals: [],
  options: {
    peft: {
      type: "string",
      value: "DIR",
      description: "PEFT LoRA folder (adapter_config.json + adapter_model.safetensors)",
    },
    model: {
      type: "string",
      value: "MANIFEST",
      description: "the model's manifest.json (factors.safetensors sits next to it)",
    },
    out: { type: "string", value: "FILE", description: "adapter file to write" },
    dtype: { type: "string", value: "T", description: "stored dtype: f16 (default), f32 or bf16" },
    "max-residual": {
      type: "string",
      value: "X",
      description: "exit 1 if the total relative residual exceeds X (e.g. 0.01)",
    },
    note: {
      type: "string",
      value: "TEXT",
      description: "adapter metadata note (default names the PEFT folder)",
    },
    json: { type: "boolean", description: "print the residual report as JSON" },
  },
  details: `For each module, with ΔW = lora_B · lora_A · scale (scale = lora_alpha / r, or / √r with rsLoRA):
  R = argmin ‖up · R · down − ΔW‖_F = (upᵀ up)⁻¹ upᵀ ΔW downᵀ (down downᵀ)⁻¹
and reports the relative residual ‖ΔW − up R down‖_F / ‖ΔW‖_F per module and in total (LoRA
modules the model does not adapt count fully toward the residual). A residual near 0 means the
LoRA lies in the LoRA-XS subspace (e.g. it came from export-peft); a general LoRA does not.`,
  async run(args, io) {
    const peftDir = resolve(io.cwd, requireOption(args, "peft", "import-peft"));
    const model = await loadModel(requireOption(args, "model", "import-peft"), io.cwd);
    const out = resolve(io.cwd, requireOption(args, "out", "import-peft"));
    const dtype = choiceOption(
      args,
      "dtype",
      "import-peft",
      DTYPE_CHOICES,
      "f16",
    ).toUpperCase() as Dtype;
    const maxResidual = parseMaxResidual(optionalOption(args, "max-residual"));
    const config = await readPeftConfig(peftDir);
    const weightsPath = join(peftDir, PEFT_WEIGHTS_FILE);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(weightsPath));
    } catch (error) {
      throw new InvalidInputError(
        `cannot read ${weightsPath}: ${(error as NodeJS.ErrnoException).code ?? error}`,
        "only safetensors PEFT weights are read; re-save with save_pretrained(dir, safe_serialization=True)",
      );
    }
    const weights = readSafetensors(bytes, weightsPath);
    const pairs = loraPairs(weights.tensors, weightsPath);
    const factors = await loadFactors(model);
    const r = factors.rank;
    const R = new Float32Array(factors.modules.length * r * r);
    const exact: Matrix[] = [];
    const inputs: { A: Matrix; B: Matrix; scale: number }[] = [];
    const results: ModuleResult[] = [];
    for (const [i, m] of factors.modules.entries()) {
      const pair = pairs.get(m.name);
      pairs.delete(m.name);
      if (!pair) {
        exact.push(matrix(r, r));
        inputs.push({ A: matrix(0, m.down.cols), B: matrix(m.up.rows, 0), scale: 0 });
        continue; // R stays 0: the LoRA does not touch this module
      }
      const { A, B } = pair;
      if (A.cols !== m.down.cols || B.rows !== m.up.rows || A.rows !== B.cols) {
        throw new InvalidInputError(
          `${weightsPath}: ${m.name} has lora_A [${A.rows}, ${A.cols}] and lora_B [${B.rows}, ${B.cols}]; the model's module is ${m.up.rows} × ${m.down.cols} (out × in)`,
          "the PEFT adapter was trained on another base model",
        );
      }
      const scale = loraScale(config, m.name);
      const p = projectLora(A, B, scale, m.down, m.up, m.name);
      R.set(Float32Array.from(p.R.data), i * r * r);
      exact.push(p.R);
      inputs.push({ A, B, scale });
      results.push({
        module: m.name,
        norm: p.norm,
        residual: p.norm === 0 ? 0 : p.residual / p.norm,
        residual_stored: 0,
      });
    }
    // LoRA modules the model does not adapt: their whole update is lost.
    const dropped = [...pairs.entries()].map(([module, { A, B }]) => {
      const norm = Math.abs(loraScale(config, module)) * frobenius(matmul(B, A));
      return { module, norm };
    });
    const note =
      optionalOption(args, "note") ??
      `imported from PEFT LoRA ${config.base_model_name_or_path ?? peftDir}`.slice(0, 1000);
    const adapterBytes = encodeAdapter(
      {
        model: model.manifest.id,
        factors: factors.digest,
        rank: r,
        modules: factors.modules.length,
        R,
        metadata: {
          created: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
          source: "import",
          note,
        },
      },
      { dtype },
    );
    const stored = decodeOrFail(adapterBytes, out, expectationsOf(model.manifest));
    let j = 0;
    for (const [i, m] of factors.modules.entries()) {
      const input = inputs[i] as { A: Matrix; B: Matrix; scale: number };
      if (input.scale === 0) continue;
      const Rs = matrix(r, r, Float64Array.from(stored.R.subarray(i * r * r, (i + 1) * r * r)));
      const res = results[j++] as ModuleResult;
      res.residual_stored =
        res.norm === 0 ? 0 : residualOf(input.A, input.B, input.scale, m.down, m.up, Rs) / res.norm;
    }
    const total = totals(results, dropped);
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, adapterBytes);
    const report = {
      adapter: out,
      bytes: adapterBytes.length,
      dtype: stored.dtype,
      modules: results,
      dropped,
      ...total,
    };
    if (args.values.json) io.stdout(`${JSON.stringify(report, null, 2)}\n`);
    else io.stdout(renderText(report));
    if (maxResidual !== undefined && total.residual > maxResidual) {
      io.stderr(
        `loraxs: total relative residual ${formatNumber(total.residual)} exceeds --max-residual ${maxResidual}\n`,
      );
      return EXIT.invalid;
    }
    return EXIT.ok;
  },
};

function parseMaxResidual(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const x = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(x) || x < 0) {
    throw new UsageError(
      `--max-residual must be a non-negative number; got ${JSON.stringify(raw)}`,
      "import-peft",
    );
  }
  return x;
}

async function readPeftConfig(dir: string): Promise<PeftLoraConfig> {
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
  if (typeof config.lora_alpha !== "number" || !Number.isFinite(config.lora_alpha))
    bad("lora_alpha", config.lora_alpha, "a number");
  if (config.use_dora)
    bad("use_dora", config.use_dora, "false (DoRA rescales W; it is not an additive update)");
  if (config.fan_in_fan_out)
    bad("fan_in_fan_out", config.fan_in_fan_out, "false (nn.Linear layers)");
  if (config.bias !== undefined && config.bias !== "none")
    bad("bias", config.bias, '"none" (trained biases are not part of LoRA-XS)');
  return config;
}

/** Groups lora_A / lora_B tensors by module; each module needs both, as 2-D float tensors. */
function loraPairs(
  tensors: Map<string, TensorView>,
  path: string,
): Map<string, { A: Matrix; B: Matrix }> {
  const parts = new Map<string, { A?: TensorView; B?: TensorView }>();
  for (const [name, t] of tensors) {
    const key = parseLoraKey(name);
    if (!key) {
      throw new InvalidInputError(
        `${path}: tensor ${name} is not a LoRA weight (…lora_A.weight / …lora_B.weight)`,
        "modules_to_save, embeddings and biases cannot be imported into LoRA-XS",
      );
    }
    if (t.shape.length !== 2)
      throw new InvalidInputError(
        `${path}: tensor ${name} has shape ${JSON.stringify(t.shape)}; expected 2-D`,
      );
    const entry = parts.get(key.module) ?? {};
    entry[key.which] = t;
    parts.set(key.module, entry);
  }
  const pairs = new Map<string, { A: Matrix; B: Matrix }>();
  for (const [module, { A, B }] of parts) {
    if (!A || !B)
      throw new InvalidInputError(
        `${path}: module ${module} has lora_${A ? "A" : "B"} but no lora_${A ? "B" : "A"}`,
      );
    pairs.set(module, {
      A: matrix(A.shape[0] as number, A.shape[1] as number, toFloat64(A)),
      B: matrix(B.shape[0] as number, B.shape[1] as number, toFloat64(B)),
    });
  }
  if (pairs.size === 0) throw new InvalidInputError(`${path}: no lora_A / lora_B tensors`);
  return pairs;
}

function totals(results: ModuleResult[], dropped: { norm: number }[]) {
  let norm2 = 0;
  let res2 = 0;
  let stored2 = 0;
  for (const m of results) {
    norm2 += m.norm ** 2;
    res2 += (m.residual * m.norm) ** 2;
    stored2 += (m.residual_stored * m.norm) ** 2;
  }
  for (const d of dropped) {
    norm2 += d.norm ** 2;
    res2 += d.norm ** 2;
    stored2 += d.norm ** 2;
  }
  const rel = (x: number) => (norm2 === 0 ? 0 : Math.sqrt(x / norm2));
  return { norm: Math.sqrt(norm2), residual: rel(res2), residual_stored: rel(stored2) };
}

function renderText(r: {
  adapter: string;
  bytes: number;
  dtype: string;
  modules: ModuleResult[];
  dropped: { module: string; norm: number }[];
  norm: number;
  residual: number;
  residual_stored: number;
}): string {
  const lines = ["relative residual ‖ΔW − up·R·down‖ / ‖ΔW‖ per module (exact R; R as stored):"];
  for (const m of r.modules) {
    lines.push(
      `  ${m.module}  ${formatNumber(m.residual)}  ${formatNumber(m.residual_stored)}  (‖ΔW‖ ${formatNumber(m.norm)})`,
    );
  }
  for (const d of r.dropped)
    lines.push(`  ${d.module}  not adapted by the model: dropped (‖ΔW‖ ${formatNumber(d.norm)})`);
  lines.push(
    `total residual ${formatNumber(r.residual)} (exact R), ${formatNumber(r.residual_stored)} (stored ${r.dtype}); ‖ΔW‖ ${formatNumber(r.norm)}`,
    `wrote ${r.adapter} (${r.bytes} bytes, source=import)`,
  );
  return `${lines.join("\n")}\n`;
}
