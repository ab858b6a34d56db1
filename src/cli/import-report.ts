// The residual report of import-peft: per module and in total, as text or JSON.

import { formatNumber } from "./stats.ts";

export interface ModuleResidual {
  module: string;
  /** ‖ΔW‖_F of the LoRA's update on this module. */
  norm: number;
  /** ‖ΔW − up R down‖_F / ‖ΔW‖_F with the exact (float64) R; 0 when ‖ΔW‖ = 0. */
  residual: number;
  /** The same with R as stored (rounded to the adapter's dtype). */
  residual_stored: number;
}

export interface ImportReport {
  adapter: string;
  bytes: number;
  dtype: string;
  modules: ModuleResidual[];
  /** LoRA modules the model does not adapt: their whole update is lost. */
  dropped: { module: string; norm: number }[];
  /** ‖ΔW‖_F over every module of the LoRA. */
  norm: number;
  /** Total relative residual, exact R. */
  residual: number;
  /** Total relative residual, R as stored. */
  residual_stored: number;
}

/** Totals over modules: sqrt(Σ residual²) / sqrt(Σ ‖ΔW‖²), dropped modules counting fully. */
export function totals(
  modules: ModuleResidual[],
  dropped: { norm: number }[],
): Pick<ImportReport, "norm" | "residual" | "residual_stored"> {
  let norm2 = 0;
  let exact2 = 0;
  let stored2 = 0;
  for (const m of modules) {
    norm2 += m.norm ** 2;
    exact2 += (m.residual * m.norm) ** 2;
    stored2 += (m.residual_stored * m.norm) ** 2;
  }
  for (const d of dropped) {
    norm2 += d.norm ** 2;
    exact2 += d.norm ** 2;
    stored2 += d.norm ** 2;
  }
  const relative = (x: number) => (norm2 === 0 ? 0 : Math.sqrt(x / norm2));
  return { norm: Math.sqrt(norm2), residual: relative(exact2), residual_stored: relative(stored2) };
}

export function renderImportReport(r: ImportReport): string {
  const lines = ["relative residual ‖ΔW − up·R·down‖ / ‖ΔW‖ per module (exact R; R as stored):"];
  for (const m of r.modules) {
    lines.push(
      `  ${m.module}  ${formatNumber(m.residual)}  ${formatNumber(m.residual_stored)}  (‖ΔW‖ ${formatNumber(m.norm)})`,
    );
  }
  for (const d of r.dropped) {
    lines.push(`  ${d.module}  not adapted by the model: dropped (‖ΔW‖ ${formatNumber(d.norm)})`);
  }
  lines.push(
    `total residual ${formatNumber(r.residual)} (exact R), ${formatNumber(r.residual_stored)} (stored ${r.dtype}); ‖ΔW‖ ${formatNumber(r.norm)}`,
    `wrote ${r.adapter} (${r.bytes} bytes, source=import)`,
  );
  return `${lines.join("\n")}\n`;
}
