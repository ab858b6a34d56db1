import { type Adapter, AdapterFormatError, decodeAdapter, sha256Hex } from "../../format/index.ts";
import { readInputFile } from "../adapter-file.ts";
import { optionalOption } from "../args.ts";
import type { Command } from "../command.ts";
import { EXIT } from "../errors.ts";
import { type LoadedModel, loadModel } from "../model.ts";
import { readSafetensors } from "../safetensors.ts";
import { formatNumber, type ValueStats, valueStats } from "../stats.ts";

interface Check {
  field: string;
  adapter: string | number;
  manifest: string | number;
  ok: boolean;
}

export const inspect: Command = {
  name: "inspect",
  summary: "Validate an adapter and show its header, shapes, value statistics and manifest match.",
  positionals: [{ name: "adapter", description: "adapter file (.safetensors)" }],
  options: {
    manifest: {
      type: "string",
      value: "PATH",
      description: "manifest.json to match: model id, factors digest, rank, modules",
    },
    json: { type: "boolean", description: "print one JSON object instead of text" },
  },
  details: `Exit code 0 when the adapter is valid (and matches --manifest when given), 1 when not;
the report says which check failed, by the format's error code (docs/adapter-format.md).`,
  async run(args, io) {
    const file = await readInputFile(args.positionals[0] as string, io.cwd, "adapter");
    const manifestPath = optionalOption(args, "manifest");
    const model = manifestPath ? await loadModel(manifestPath, io.cwd) : undefined;
    const report = await buildReport(file.path, file.bytes, model);
    if (args.values.json) io.stdout(`${JSON.stringify(report, null, 2)}\n`);
    else io.stdout(renderText(report));
    return report.valid ? EXIT.ok : EXIT.invalid;
  },
};

type Report = Awaited<ReturnType<typeof buildReport>>;

async function buildReport(path: string, bytes: Uint8Array, model: LoadedModel | undefined) {
  const base = { file: path, bytes: bytes.length, sha256: await sha256Hex(bytes) };
  let adapter: Adapter;
  try {
    adapter = decodeAdapter(bytes);
  } catch (error) {
    if (!(error instanceof AdapterFormatError)) throw error;
    return {
      ...base,
      valid: false,
      error: { code: error.code, message: error.message, detail: error.detail ?? null },
    };
  }
  const container = readSafetensors(bytes, path);
  const tensors = [...container.tensors.values()].map((t) => ({
    name: t.name,
    dtype: t.dtype,
    shape: t.shape,
    bytes: t.bytes.length,
  }));
  const stats: Record<string, ValueStats> = { R: valueStats(adapter.R) };
  if (adapter.head) {
    stats["head.weight"] = valueStats(adapter.head.weight);
    stats["head.bias"] = valueStats(adapter.head.bias);
  }
  const rr = adapter.rank * adapter.rank;
  const moduleNorms = Array.from(
    { length: adapter.modules },
    (_, i) => valueStats(adapter.R.subarray(i * rr, (i + 1) * rr)).norm,
  );
  const report = {
    ...base,
    valid: true,
    header: {
      bytes: container.headerBytes,
      format: adapter.metadata.format,
      format_version: adapter.metadata.format_version,
    },
    model: adapter.model,
    factors: adapter.factors,
    rank: adapter.rank,
    modules: adapter.modules,
    dtype: adapter.dtype,
    tensors,
    stats,
    labels: adapter.head?.labels ?? null,
    metadata: adapter.metadata,
    module_norms: moduleNorms.map((norm, i) => ({
      module: model?.manifest.modules[i]?.name ?? i,
      norm,
    })),
    manifest: null as null | { file: string; matches: boolean; checks: Check[] },
  };
  if (model) {
    const m = model.manifest;
    const checks: Check[] = [
      check("model", adapter.model, m.id),
      check("factors", adapter.factors, m.factors.sha256),
      check("rank", adapter.rank, m.rank),
      check("modules", adapter.modules, m.modules.length),
    ];
    const hidden = m.family === "encoder" ? m.config.hidden_size : undefined;
    if (adapter.head && hidden !== undefined)
      checks.push(check("head hidden", adapter.head.hidden, hidden));
    const matches = checks.every((c) => c.ok);
    report.manifest = { file: model.path, matches, checks };
    report.valid = matches;
  }
  return report;
}

function check(field: string, adapter: string | number, manifest: string | number): Check {
  return { field, adapter, manifest, ok: adapter === manifest };
}

function renderText(r: Report): string {
  const lines = [`adapter   ${r.file} (${r.bytes} bytes, sha256 ${r.sha256})`];
  if (!("header" in r)) {
    lines.push(
      `INVALID   ${r.error.message}`,
      `          code ${r.error.code} (docs/adapter-format.md lists every check)`,
    );
    return `${lines.join("\n")}\n`;
  }
  lines.push(
    `header    ${r.header.bytes} bytes, format ${r.header.format} v${r.header.format_version}`,
    `model     ${r.model}`,
    `factors   ${r.factors}`,
    `shape     ${r.modules} modules × rank ${r.rank}, ${r.dtype}`,
  );
  for (const t of r.tensors)
    lines.push(`tensor    ${t.name} ${t.dtype} [${t.shape.join(", ")}] ${t.bytes} bytes`);
  for (const [name, s] of Object.entries(r.stats)) {
    lines.push(
      `values    ${name}: min ${formatNumber(s.min)} max ${formatNumber(s.max)} mean ${formatNumber(s.mean)} std ${formatNumber(s.std)} zeros ${(100 * s.zeros).toFixed(1)}%`,
    );
  }
  if (r.labels) lines.push(`labels    ${r.labels.join(", ")}`);
  const optional = Object.entries(r.metadata).filter(
    ([k]) =>
      !["format", "format_version", "model", "factors", "rank", "modules", "labels"].includes(k),
  );
  for (const [k, v] of optional) lines.push(`metadata  ${k} = ${v}`);
  if (r.manifest) {
    lines.push(`manifest  ${r.manifest.file}`);
    for (const c of r.manifest.checks) {
      lines.push(
        `  ${c.ok ? "ok      " : "MISMATCH"} ${c.field}: adapter ${c.adapter}${c.ok ? "" : `, manifest ${c.manifest}`}`,
      );
    }
  }
  lines.push(r.valid ? "valid" : "INVALID: the adapter does not match the manifest");
  return `${lines.join("\n")}\n`;
}
