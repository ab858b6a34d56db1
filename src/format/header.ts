// The JSON header the writer emits: keys in a fixed order that matches the official
// safetensors writer (`__metadata__` first, tensors sorted by name), compact, and padded with
// spaces so the data starts 8-byte aligned.

import type { Dtype } from "./dtype.ts";
import { HEADER_ALIGNMENT } from "./limits.ts";

/** Tensor names in file order (the official writer sorts same-dtype tensors by name). */
export const TENSOR_ORDER = ["R", "head.bias", "head.weight"] as const;
export type TensorName = (typeof TENSOR_ORDER)[number];

export interface TensorEntry {
  name: TensorName;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

/** Builds the padded header text; entries must be in TENSOR_ORDER. */
export function buildHeaderJson(metadata: [string, string][], entries: TensorEntry[]): string {
  const meta = metadata.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",");
  let json = `{"__metadata__":{${meta}}`;
  for (const t of entries) {
    json += `,${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${t.begin},${t.end}]}`;
  }
  json += "}";
  const length = new TextEncoder().encode(json).length;
  const pad = (HEADER_ALIGNMENT - (length % HEADER_ALIGNMENT)) % HEADER_ALIGNMENT;
  return json + " ".repeat(pad);
}
