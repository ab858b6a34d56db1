// Reads test/fixtures/adapters/expected.json, the test vectors shared with the Python tests.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { AdapterExpectations, AdapterInput, Dtype } from "../../../src/format/index.ts";

export const FIXTURES = join(new URL("../../fixtures/adapters", import.meta.url).pathname);

export interface InputJson {
  name: string;
  writer: "ts" | "py";
  dtype: Dtype;
  model: string;
  factors: string;
  rank: number;
  modules: number;
  metadata: Record<string, string>;
  R_bits: number[];
  head: null | {
    classes: number;
    hidden: number;
    labels: string[] | null;
    weight_bits: number[];
    bias_bits: number[];
  };
}

export interface Case {
  name: string;
  file?: string;
  synthetic?: { zeros: number };
  note: string;
  expect: AdapterExpectations;
  verdict: "valid" | "invalid";
  code?: string;
  writer?: "ts" | "py";
  canonical?: boolean;
  decoded?: {
    model: string;
    factors: string;
    rank: number;
    modules: number;
    dtype: Dtype;
    classes: number | null;
    hidden: number | null;
    labels: string[] | null;
  };
  input?: InputJson;
  bits?: Record<string, number[]>;
  sha256_f32?: string;
}

export const cases: Case[] = JSON.parse(
  readFileSync(join(FIXTURES, "expected.json"), "utf8"),
).cases;

export function bytesOf(c: Case): Uint8Array {
  if (c.file !== undefined) return new Uint8Array(readFileSync(join(FIXTURES, c.file)));
  return new Uint8Array(c.synthetic?.zeros ?? 0);
}

const f32 = (bits: number[]) => new Float32Array(new Uint32Array(bits).buffer);

export function inputOf(j: InputJson): AdapterInput {
  const input: AdapterInput = {
    model: j.model,
    factors: j.factors,
    rank: j.rank,
    modules: j.modules,
    R: f32(j.R_bits),
    metadata: j.metadata,
  };
  if (j.head !== null) {
    input.head = {
      classes: j.head.classes,
      hidden: j.head.hidden,
      weight: f32(j.head.weight_bits),
      bias: f32(j.head.bias_bits),
    };
    if (j.head.labels !== null) input.head.labels = j.head.labels;
  }
  return input;
}

export const bitsOf = (x: Float32Array) =>
  Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));
