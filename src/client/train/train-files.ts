// The training step the manifest describes (`onnx_train`, file role `onnx-train`), fetched and
// verified through the model loader and its cache, like the model's other files.

import type { BlobCache } from "../cache/index.ts";
import { ModelFileError } from "../errors.ts";
import { loadModelFiles, modelSource } from "../loader/index.ts";
import type { ManifestFile, OnnxTrain } from "../manifest.ts";

/** The step graph's inputs, in order (docs/manifest.md, `onnx_train.inputs`). */
const TRAIN_INPUTS = ["input_ids", "attention_mask", "labels", "R"];

/** The manifest's training-step block and the graph's `files` entry. */
export interface TrainInfo {
  model: string;
  factors: string;
  onnx_train: OnnxTrain;
  files: ManifestFile[];
}

/** The step block of a manifest, checked against the model it is meant to train. */
export function checkTrainInfo(
  manifest: {
    id: string;
    factors: { sha256: string };
    files: ManifestFile[];
    onnx_train?: OnnxTrain;
  },
  model: string,
  factors: string,
): TrainInfo {
  const train = manifest.onnx_train;
  const fail = (what: string, got: unknown, want: string): never => {
    throw new ModelFileError(
      "bad_train_info",
      "manifest.json",
      `${what} is ${JSON.stringify(got)}; expected ${want}`,
    );
  };
  if (train === undefined) {
    throw new ModelFileError(
      "no_train_step",
      "manifest.json",
      `model ${manifest.id} has no onnx_train: prepare it with --train-step BxT`,
    );
  }
  if (manifest.id !== model) fail("id", manifest.id, JSON.stringify(model));
  if (manifest.factors.sha256 !== factors)
    fail("factors.sha256", manifest.factors.sha256, JSON.stringify(factors));
  const s = train.shapes;
  if (!Number.isInteger(s?.batch) || !Number.isInteger(s?.seq) || s.batch < 1 || s.seq < 2)
    fail("onnx_train.shapes", s, "{batch >= 1, seq >= 2}");
  if (JSON.stringify(train.inputs) !== JSON.stringify(TRAIN_INPUTS))
    fail("onnx_train.inputs", train.inputs, JSON.stringify(TRAIN_INPUTS));
  const entry = manifest.files.find((f) => f.name === train.file);
  if (entry?.role !== "onnx-train")
    fail(
      "files",
      manifest.files.map((f) => `${f.name} (${f.role})`),
      `to list ${train.file} with role onnx-train`,
    );
  return { model, factors, onnx_train: train, files: [entry as ManifestFile] };
}

export interface TrainFiles {
  info: TrainInfo;
  graph: { bytes?: Uint8Array; path?: string };
}

/**
 * Fetch the step graph the manifest at `location` lists (role `onnx-train`) through the model
 * loader: verified by size and sha256, kept in the model's cache folder (so onnxruntime-node finds
 * the shared weights file beside it), not downloaded again once cached.
 */
export async function loadTrainFiles(
  location: string,
  model: { id: string; factors: string },
  cache: BlobCache,
  init: { fetch?: typeof fetch; signal?: AbortSignal } = {},
): Promise<TrainFiles> {
  const loaded = await loadModelFiles(modelSource(location, init.fetch), {
    cache,
    signal: init.signal,
    // The step graph and the fp32 weights it reads (not fetched by a model running another graph).
    include: (f) => f.role === "onnx-train" || f.role === "onnx-data",
    includeFor: (m) => (f) => f.role === "onnx-train" || f.name === m.onnx_train?.data_file,
    pathOnly: (f) =>
      (f.role === "onnx-train" || f.role === "onnx-data") && cache.localPath !== undefined,
  });
  const info = checkTrainInfo(loaded.manifest, model.id, model.factors);
  const file = loaded.files.get(info.onnx_train.file);
  if (file === undefined) throw new Error("unreachable: checked by checkTrainInfo");
  if (file.path !== undefined) return { info, graph: { path: file.path } };
  return { info, graph: { bytes: file.bytes } };
}
