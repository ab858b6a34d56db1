// train.json (written by scripts/loraxs/export_train_step.py) and the step graph it lists.

import type { BlobCache } from "../cache/index.ts";
import { ModelFileError } from "../errors.ts";
import { fileKey, modelSource, sha256Digest } from "../loader/index.ts";

export const TRAIN_INFO_FILE = "train.json";

export interface TrainInfo {
  schema_version: number;
  model: string;
  factors: string;
  onnx_train: {
    file: string;
    /** The inference graph's weights file the step graph reads (shared, downloaded once). */
    data_file: string | null;
    inputs: string[];
    outputs: string[];
    shapes: { batch: number; seq: number };
    ignore_index: number;
    check?: Record<string, unknown>;
  };
  files: { name: string; sha256: string; bytes: number }[];
}

export function checkTrainInfo(json: unknown, model: string, factors: string): TrainInfo {
  const info = json as TrainInfo;
  const fail = (what: string, got: unknown, want: string): never => {
    throw new ModelFileError(
      "bad_train_info",
      TRAIN_INFO_FILE,
      `${what} is ${JSON.stringify(got)}; expected ${want}`,
    );
  };
  if (typeof info !== "object" || info === null) fail("the file", info, "an object");
  if (info.model !== model) fail("model", info.model, JSON.stringify(model));
  if (info.factors !== factors) fail("factors", info.factors, JSON.stringify(factors));
  const s = info.onnx_train?.shapes;
  if (!Number.isInteger(s?.batch) || !Number.isInteger(s?.seq) || s.batch < 1 || s.seq < 2)
    fail("onnx_train.shapes", s, "{batch >= 1, seq >= 2}");
  const names = ["input_ids", "attention_mask", "labels", "R"];
  if (JSON.stringify(info.onnx_train.inputs) !== JSON.stringify(names))
    fail("onnx_train.inputs", info.onnx_train.inputs, JSON.stringify(names));
  if (!info.files.some((f) => f.name === info.onnx_train.file))
    fail(
      "files",
      info.files.map((f) => f.name),
      `to list ${info.onnx_train.file}`,
    );
  return info;
}

export interface TrainFiles {
  info: TrainInfo;
  graph: { bytes?: Uint8Array; path?: string };
}

/**
 * Fetch train.json and the step graph from the model's location (verified by sha256, kept in
 * the model's cache folder so onnxruntime-node finds the shared weights file beside it).
 */
export async function loadTrainFiles(
  location: string,
  model: { id: string; factors: string },
  cache: BlobCache,
  init: { fetch?: typeof fetch; signal?: AbortSignal } = {},
): Promise<TrainFiles> {
  const source = modelSource(location, init.fetch);
  const infoUrl = source.fileUrl(TRAIN_INFO_FILE);
  const res = await source.open(infoUrl, { signal: init.signal });
  if (!res.ok) {
    throw new ModelFileError(
      "no_train_step",
      TRAIN_INFO_FILE,
      `GET ${infoUrl} answered ${res.status}: this model has no exported training step`,
    );
  }
  const info = checkTrainInfo(await res.json(), model.id, model.factors);
  const entry = info.files.find((f) => f.name === info.onnx_train.file);
  if (entry === undefined) throw new Error("unreachable: checked by checkTrainInfo");
  const key = fileKey(model.id, entry.name);
  const cached = await cache.head(key);
  let bytes: Uint8Array | undefined;
  if (cached?.sha256 !== entry.sha256) {
    const url = source.fileUrl(entry.name);
    const r = await source.open(url, { signal: init.signal });
    if (!r.ok)
      throw new ModelFileError("http_error", entry.name, `GET ${url} answered ${r.status}`);
    bytes = new Uint8Array(await r.arrayBuffer());
    const digest = await sha256Digest(bytes);
    if (digest !== entry.sha256) {
      throw new ModelFileError(
        "sha256_mismatch",
        entry.name,
        `downloaded bytes hash to ${digest}, train.json says ${entry.sha256}`,
      );
    }
    await cache.put(key, bytes, { sha256: entry.sha256, bytes: String(entry.bytes) });
  }
  if (cache.localPath !== undefined) return { info, graph: { path: cache.localPath(key) } };
  bytes ??= (await cache.get(key))?.bytes;
  return { info, graph: { bytes } };
}
