// Which graph variant of a manifest this device runs (docs/manifest.md, `graphs`).
import { ClientError } from "./errors.ts";
import type { ClientManifest, GraphVariant, ManifestFile } from "./manifest.ts";

/** The graph a model runs, and why it was picked. */
export interface GraphChoice {
  name: string;
  file: string;
  dataFiles: string[];
  weightsDtype: string;
  quantization: string;
  /** Most prompt tokens a run may take; prefill runs in chunks of this size (unset: no limit). */
  prefillChunk?: number;
  reason: string;
}

function fromVariant(g: GraphVariant, reason: string): GraphChoice {
  return {
    name: g.name,
    file: g.file,
    dataFiles: [...g.data_files],
    weightsDtype: g.weights_dtype,
    quantization: g.quantization,
    ...(g.prefill_chunk !== undefined ? { prefillChunk: g.prefill_chunk } : {}),
    reason,
  };
}

/**
 * The manifest's first graph listing `device`, or the one named by `requested`; manifests
 * without `graphs` run their `onnx` graph (named "default").
 */
export function chooseGraph(
  manifest: ClientManifest,
  device: string,
  requested?: string,
): GraphChoice {
  const graphs = manifest.graphs ?? [];
  if (requested !== undefined) {
    const g = graphs.find((x) => x.name === requested);
    if (g === undefined) {
      const names = graphs.length > 0 ? graphs.map((x) => x.name).join(", ") : "none";
      throw new ClientError(
        "unknown_graph",
        `model ${manifest.id} has no graph ${JSON.stringify(requested)}; it has: ${names}`,
      );
    }
    return fromVariant(g, `requested graph ${g.name}`);
  }
  const g = graphs.find((x) => x.devices.includes(device));
  if (g !== undefined) return fromVariant(g, `first graph listed for ${device}`);
  if (manifest.onnx === null || manifest.onnx === undefined) {
    throw new ClientError("manifest_incomplete", `model ${manifest.id} has no graph for ${device}`);
  }
  return {
    name: "default",
    file: manifest.onnx.file,
    dataFiles: manifest.onnx.data_file ? [manifest.onnx.data_file] : [],
    weightsDtype: manifest.onnx.weights_dtype ?? "F32",
    quantization: manifest.onnx.quantization ?? "none",
    reason:
      graphs.length > 0 ? `no graph lists ${device}: the manifest's onnx graph` : "the only graph",
  };
}

/**
 * Files of graphs other than the chosen one are not fetched (the training step's data file is,
 * when training is asked for).
 */
export function graphFileFilter(
  manifest: ClientManifest,
  choice: GraphChoice,
  train = false,
): (file: ManifestFile) => boolean {
  const graphFiles = new Set<string>();
  for (const g of manifest.graphs ?? [])
    for (const n of [g.file, ...g.data_files]) graphFiles.add(n);
  if (manifest.onnx) {
    graphFiles.add(manifest.onnx.file);
    if (manifest.onnx.data_file) graphFiles.add(manifest.onnx.data_file);
  }
  const wanted = new Set([choice.file, ...choice.dataFiles]);
  const trainData = train ? manifest.onnx_train?.data_file : undefined;
  return (file) => !graphFiles.has(file.name) || wanted.has(file.name) || file.name === trainData;
}
