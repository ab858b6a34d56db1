import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { type Dtype, encodeAdapter } from "../../format/index.ts";
import { expectationsFor } from "../../manifest/index.ts";
import { decodeOrFail } from "../adapter-file.ts";
import { choiceOption, optionalOption, requireOption } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT, InvalidInputError, UsageError } from "../errors.ts";
import { loadFactors, type ModuleFactors } from "../factors.ts";
import {
  type ImportReport,
  type ModuleResidual,
  renderImportReport,
  totals,
} from "../import-report.ts";
import { frobenius, matmul, matrix } from "../linalg.ts";
import { loadModel } from "../model.ts";
import { loraScale, PEFT_WEIGHTS_FILE } from "../peft.ts";
import { type LoraPair, readLoraPairs, readPeftConfig } from "../peft-read.ts";
import { projectLora, residualOf } from "../projection.ts";
import { formatNumber } from "../stats.ts";

const DTYPE_CHOICES = ["f16", "f32", "bf16"] as const;

/** A manifest module the LoRA touches, with its exact projection. */
interface Projected {
  index: number;
  factors: ModuleFactors;
  pair: LoraPair;
  scale: number;
  result: ModuleResidual;
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
    const choice = choiceOption(args, "dtype", "import-peft", DTYPE_CHOICES, "f16");
    const dtype = choice.toUpperCase() as Dtype;
    const maxResidual = parseMaxResidual(optionalOption(args, "max-residual"));
    const config = await readPeftConfig(peftDir);
    const pairs = await readLoraPairs(peftDir);
    const factors = await loadFactors(model);
    const r = factors.rank;
    const rr = r * r;

    // Project every manifest module the LoRA touches; the others keep R = 0.
    const R = new Float32Array(factors.modules.length * rr);
    const projected: Projected[] = [];
    for (const [index, m] of factors.modules.entries()) {
      const pair = pairs.get(m.name);
      pairs.delete(m.name);
      if (!pair) continue;
      checkShapes(pair, m, join(peftDir, PEFT_WEIGHTS_FILE));
      const scale = loraScale(config, m.name);
      const p = projectLora(pair.A, pair.B, scale, m.down, m.up, m.name);
      R.set(p.R.data, index * rr);
      const residual = p.norm === 0 ? 0 : p.residual / p.norm;
      projected.push({
        index,
        factors: m,
        pair,
        scale,
        result: { module: m.name, norm: p.norm, residual, residual_stored: 0 },
      });
    }
    const dropped = [...pairs].map(([module, { A, B }]) => ({
      module,
      norm: Math.abs(loraScale(config, module)) * frobenius(matmul(B, A)),
    }));

    const note =
      optionalOption(args, "note") ??
      `imported from PEFT LoRA ${config.base_model_name_or_path ?? peftDir}`;
    const bytes = encodeAdapter(
      {
        model: model.manifest.id,
        factors: factors.digest,
        rank: r,
        modules: factors.modules.length,
        R,
        metadata: {
          created: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
          source: "import",
          note: note.slice(0, 1000),
        },
      },
      { dtype },
    );
    // The residual with R as the file stores it (rounded to the dtype).
    const stored = decodeOrFail(bytes, out, expectationsFor(model.manifest));
    for (const p of projected) {
      const Rs = matrix(
        r,
        r,
        Float64Array.from(stored.R.subarray(p.index * rr, (p.index + 1) * rr)),
      );
      const res = residualOf(p.pair.A, p.pair.B, p.scale, p.factors.down, p.factors.up, Rs);
      p.result.residual_stored = p.result.norm === 0 ? 0 : res / p.result.norm;
    }
    const modules = projected.map((p) => p.result);
    const report: ImportReport = {
      adapter: out,
      bytes: bytes.length,
      dtype: stored.dtype,
      modules,
      dropped,
      ...totals(modules, dropped),
    };
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, bytes);
    io.stdout(
      args.values.json ? `${JSON.stringify(report, null, 2)}\n` : renderImportReport(report),
    );
    if (maxResidual !== undefined && report.residual > maxResidual) {
      io.stderr(
        `loraxs: total relative residual ${formatNumber(report.residual)} exceeds --max-residual ${maxResidual}\n`,
      );
      return EXIT.invalid;
    }
    return EXIT.ok;
  },
};

function checkShapes({ A, B }: LoraPair, m: ModuleFactors, path: string): void {
  if (A.cols !== m.down.cols || B.rows !== m.up.rows || A.rows !== B.cols) {
    throw new InvalidInputError(
      `${path}: ${m.name} has lora_A [${A.rows}, ${A.cols}] and lora_B [${B.rows}, ${B.cols}]; the model's module is ${m.up.rows} × ${m.down.cols} (out × in)`,
      "the PEFT adapter was trained on another base model",
    );
  }
}

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
