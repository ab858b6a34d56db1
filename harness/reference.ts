// Reads prepare's reference fixtures (reference.json + the per-case adapter files).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { PersonalModel } from "../src/client/index.ts";
import type { Adapter } from "../src/format/index.ts";
import { decodeAdapter } from "../src/format/index.ts";

export interface ReferenceCase {
  name: string;
  R: string;
  adapter?: string;
  input_ids: number[][];
  attention_mask: number[][];
  logits_last?: number[][];
  embedding?: number[][];
  greedy?: number[];
}

export interface Reference {
  model: string;
  factors: string;
  text: string;
  tolerance: number;
  cases: ReferenceCase[];
}

export function readReference(dir: string): Reference {
  return JSON.parse(readFileSync(join(dir, "reference.json"), "utf8")) as Reference;
}

/** The case's adapter through src/format (null for the zero-R base case). */
export function caseAdapter(dir: string, c: ReferenceCase, ref: Reference): Adapter | null {
  if (c.R === "zeros") return null;
  if (c.adapter === undefined) throw new Error(`case ${c.name} names no adapter file`);
  return decodeAdapter(new Uint8Array(readFileSync(join(dir, c.adapter))), {
    model: ref.model,
    factors: ref.factors,
  });
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++)
    max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  return max;
}

/** Greedy tokens for the case's prompt with the KV cache (as many as its PyTorch reference has). */
export async function caseGreedy(model: PersonalModel, c: ReferenceCase): Promise<number[]> {
  const tokens: number[] = [];
  const options = { maxTokens: c.greedy?.length ?? 8, stopIds: new Set<number>() };
  for await (const t of model.tokens({ ids: c.input_ids[0] ?? [] }, options)) tokens.push(t);
  return tokens;
}
