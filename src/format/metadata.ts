// The `__metadata__` keys of an adapter and the rules for their values, shared by the writer
// (which checks its input) and the reader (which checks the file).

import { fail } from "./errors.ts";
import {
  MAX_CLASSES,
  MAX_LABEL_BYTES,
  MAX_MODEL_ID_BYTES,
  MAX_MODULES,
  MAX_NOTE_BYTES,
  MAX_RANK,
} from "./limits.ts";

export const FORMAT = "loraxs";
export const FORMAT_VERSION = "1";

/** Keys every adapter carries, in the order writers emit them. */
export const REQUIRED_KEYS = ["format", "format_version", "model", "factors", "rank", "modules"];

/** Keys a caller may add (the writer emits them after `labels`, in this order). */
export const OPTIONAL_KEYS = ["created", "source", "steps", "note"] as const;
export type OptionalKey = (typeof OPTIONAL_KEYS)[number];

/** Every key a reader accepts, in writer order. */
export const METADATA_KEYS: readonly string[] = [...REQUIRED_KEYS, "labels", ...OPTIONAL_KEYS];

/** Where an adapter came from. */
export const SOURCES = ["worker", "client", "import"] as const;

const MODEL_ID = /^[a-z0-9][a-z0-9._-]*$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const POSITIVE_INTEGER = /^[1-9][0-9]{0,15}$/;
const NON_NEGATIVE_INTEGER = /^(?:0|[1-9][0-9]{0,15})$/;
const CREATED = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z$/;
/** Control characters U+0000–U+001F and U+007F. */
const hasControl = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
};

const encoder = new TextEncoder();
export const utf8Length = (s: string): number => encoder.encode(s).length;

export function checkModel(model: unknown): string {
  if (typeof model !== "string" || !MODEL_ID.test(model) || model.length > MAX_MODEL_ID_BYTES) {
    fail(
      "model_invalid",
      `model ${JSON.stringify(model)} is not a model id (lowercase letters, digits, '.', '_', '-'; at most ${MAX_MODEL_ID_BYTES} characters)`,
      { value: model, limit: MAX_MODEL_ID_BYTES },
    );
  }
  return model;
}

export function checkFactors(factors: unknown): string {
  if (typeof factors !== "string" || !DIGEST.test(factors)) {
    fail(
      "factors_invalid",
      `factors ${JSON.stringify(factors)} is not "sha256:" followed by 64 lowercase hex digits`,
      { value: factors },
    );
  }
  return factors;
}

function checkCount(
  code: "rank_invalid" | "modules_invalid",
  key: string,
  value: unknown,
  limit: number,
): number {
  const n = typeof value === "string" && POSITIVE_INTEGER.test(value) ? Number(value) : Number.NaN;
  if (!(n >= 1 && n <= limit)) {
    fail(
      code,
      `${key} ${JSON.stringify(value)} is not a positive integer written in decimal without leading zeros, at most ${limit}`,
      { value, limit },
    );
  }
  return n;
}

/** `rank` as written in the metadata ("16"). */
export const checkRankText = (v: unknown) => checkCount("rank_invalid", "rank", v, MAX_RANK);
/** `modules` as written in the metadata ("30"). */
export const checkModulesText = (v: unknown) =>
  checkCount("modules_invalid", "modules", v, MAX_MODULES);

/** A writer's numeric rank / modules: the same rule on the decimal text. */
export function checkRank(rank: unknown): number {
  return checkRankText(Number.isSafeInteger(rank) ? String(rank) : rank);
}
export function checkModules(modules: unknown): number {
  return checkModulesText(Number.isSafeInteger(modules) ? String(modules) : modules);
}

/** Labels: 1..MAX_CLASSES distinct non-empty strings without control characters. */
export function checkLabels(labels: unknown): string[] {
  const bad = (why: string): never =>
    fail("labels_invalid", `labels ${why}`, { value: labels, limit: MAX_CLASSES });
  if (!Array.isArray(labels)) bad("must be an array of strings");
  const list = labels as unknown[];
  if (list.length < 1 || list.length > MAX_CLASSES) {
    bad(`has ${list.length} entries; allowed 1..${MAX_CLASSES}`);
  }
  const seen = new Set<string>();
  for (const [i, label] of list.entries()) {
    if (typeof label !== "string") bad(`[${i}] is not a string`);
    const s = label as string;
    if (s.length === 0 || hasControl(s) || /[\uD800-\uDFFF]/u.test(s)) {
      bad(`[${i}] ${JSON.stringify(s)} is empty or has a control character or lone surrogate`);
    }
    if (utf8Length(s) > MAX_LABEL_BYTES) {
      bad(`[${i}] is ${utf8Length(s)} UTF-8 bytes; limit ${MAX_LABEL_BYTES}`);
    }
    if (seen.has(s)) bad(`[${i}] ${JSON.stringify(s)} repeats an earlier label`);
    seen.add(s);
  }
  return list as string[];
}

/** The `labels` metadata value: a JSON array of strings. Parsed with JSON.parse: a string
 * array has no numbers or keys, so JSON.parse and Python's json agree on it. */
export function parseLabelsText(text: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    fail("labels_invalid", `labels ${JSON.stringify(text.slice(0, 80))} is not JSON`, {
      value: text,
    });
  }
  return checkLabels(parsed);
}

/** Optional keys: created (ISO 8601 UTC), source (worker | client | import), steps, note. */
export function checkOptional(key: OptionalKey, value: unknown): string {
  const bad = (allowed: string): never =>
    fail("metadata_value_invalid", `${key} ${JSON.stringify(value)} is invalid; ${allowed}`, {
      key,
      value,
      allowed,
    });
  if (typeof value !== "string") bad("expected a string");
  const s = value as string;
  if (key === "created" && !CREATED.test(s)) bad("expected UTC ISO 8601 like 2026-11-28T17:00:00Z");
  if (key === "source" && !(SOURCES as readonly string[]).includes(s)) {
    bad(`expected one of ${SOURCES.join(", ")}`);
  }
  if (key === "steps" && !NON_NEGATIVE_INTEGER.test(s)) {
    bad("expected a non-negative integer, at most 16 digits");
  }
  if (key === "note" && (utf8Length(s) > MAX_NOTE_BYTES || /[\uD800-\uDFFF]/u.test(s))) {
    bad(`expected at most ${MAX_NOTE_BYTES} UTF-8 bytes and no lone surrogate`);
  }
  return s;
}
