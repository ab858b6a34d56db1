import type { z } from "zod";
import { type Manifest, manifestSchema } from "./schema.ts";

/** Kinds of manifest problems, shared with scripts/loraxs/manifest.py. */
export type ManifestIssueCode = "missing" | "unknown_key" | "invalid" | "inconsistent";

export interface ManifestIssue {
  /** Dotted path to the offending field, e.g. "modules.3.in" ("" for the whole manifest). */
  path: string;
  code: ManifestIssueCode;
  message: string;
}

/** A manifest that does not follow docs/manifest.md; `issues` lists every problem found. */
export class ManifestError extends Error {
  override readonly name = "ManifestError";
  readonly issues: ManifestIssue[];

  constructor(issues: ManifestIssue[]) {
    super(
      `invalid manifest: ${issues.map((i) => `${i.path || "(root)"}: ${i.message}`).join("; ")}`,
    );
    this.issues = issues;
  }
}

/** The value at `path` in the input, for messages (zod reports a union's whole object). */
function valueAt(json: unknown, path: PropertyKey[]): unknown {
  let v: unknown = json;
  for (const k of path) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function toIssues(json: unknown, issue: z.core.$ZodIssue): ManifestIssue[] {
  const path = issue.path.map(String).join(".");
  const join = (key: string) => (path === "" ? key : `${path}.${key}`);
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((k) => ({
      path: join(k),
      code: "unknown_key",
      message: `unknown key "${k}"`,
    }));
  }
  const parent = valueAt(json, issue.path.slice(0, -1));
  const key = issue.path[issue.path.length - 1];
  if (
    issue.path.length > 0 &&
    typeof parent === "object" &&
    parent !== null &&
    !Object.hasOwn(parent, key as PropertyKey)
  ) {
    return [{ path, code: "missing", message: "missing" }];
  }
  const value = valueAt(json, issue.path);
  const shown = value === undefined ? "" : `; got ${show(value)}`;
  return [
    {
      path,
      code: issue.code === "custom" ? "inconsistent" : "invalid",
      message: issue.code === "custom" ? issue.message : `${issue.message}${shown}`,
    },
  ];
}

/** Validates parsed manifest.json; throws ManifestError naming each offending path. */
export function parseManifest(json: unknown): Manifest {
  const r = manifestSchema.safeParse(json);
  if (r.success) return r.data;
  throw new ManifestError(r.error.issues.flatMap((i) => toIssues(json, i)));
}
