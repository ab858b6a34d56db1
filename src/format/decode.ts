// The reader: every check of docs/adapter-format.md, in order, each with its own code.
// It throws AdapterFormatError and nothing else, and does work bounded by the input size.

import { checkExpectations } from "./check-expectations.ts";
import { AdapterFormatError, fail } from "./errors.ts";
import type { TensorName } from "./header.ts";
import { checkLayout } from "./layout.ts";
import { readEntries } from "./read-entries.ts";
import { readHeader } from "./read-header.ts";
import { readMetadata } from "./read-metadata.ts";
import { readTensor } from "./read-tensor.ts";
import type { Adapter, AdapterExpectations, AdapterHead } from "./types.ts";

/**
 * Decodes and fully validates an adapter file. Throws AdapterFormatError (never anything
 * else) with the first failed check's code.
 */
export function decodeAdapter(bytes: Uint8Array, expect: AdapterExpectations = {}): Adapter {
  try {
    if (!(bytes instanceof Uint8Array)) {
      fail("file_too_small", `expected a Uint8Array, got ${typeof bytes}`, { value: typeof bytes });
    }
    const { header, dataStart } = readHeader(bytes);
    const meta = readMetadata(header);
    const { entries, dtype } = readEntries(header, meta);
    checkLayout(entries, bytes.length - dataStart);
    const data = new Map<TensorName, Float32Array>();
    for (const t of entries) data.set(t.name, readTensor(bytes, dataStart + t.begin, t));
    const adapter: Adapter = {
      model: meta.model,
      factors: meta.factors,
      rank: meta.rank,
      modules: meta.modules,
      dtype,
      R: data.get("R") as Float32Array,
      metadata: meta.metadata,
      bytes: bytes.length,
    };
    const weight = entries.find((t) => t.name === "head.weight");
    if (weight !== undefined) {
      const head: AdapterHead = {
        weight: data.get("head.weight") as Float32Array,
        bias: data.get("head.bias") as Float32Array,
        classes: weight.shape[0] as number,
        hidden: weight.shape[1] as number,
      };
      if (meta.labels !== undefined) head.labels = meta.labels;
      adapter.head = head;
    }
    checkExpectations(adapter, expect);
    return adapter;
  } catch (e) {
    if (e instanceof AdapterFormatError) throw e;
    // A bug here must still surface as the one error type callers handle.
    throw new AdapterFormatError("header_invalid_json", `unexpected failure: ${String(e)}`);
  }
}
