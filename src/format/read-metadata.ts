import { fail } from "./errors.ts";
import { isJsonObject, type JsonObject } from "./json.ts";
import {
  checkFactors,
  checkModel,
  checkModulesText,
  checkOptional,
  checkRankText,
  FORMAT,
  FORMAT_VERSION,
  METADATA_KEYS,
  OPTIONAL_KEYS,
  parseLabelsText,
  REQUIRED_KEYS,
} from "./metadata.ts";
import { show } from "./show.ts";

/** What `__metadata__` says, checked. */
export interface Meta {
  metadata: Record<string, string>;
  model: string;
  factors: string;
  rank: number;
  modules: number;
  labels?: string[];
}

/** Checks 8–19: `__metadata__`. */
export function readMetadata(header: JsonObject): Meta {
  const raw = header.__metadata__;
  if (!isJsonObject(raw)) {
    fail("metadata_missing", `__metadata__ is ${show(raw ?? "absent")}, not an object of strings`);
  }
  // Null prototype while checking, so a key such as "__proto__" is a key like any other.
  const metadata: Record<string, string> = Object.create(null);
  for (const key of Object.keys(raw).sort()) {
    const v = raw[key];
    if (typeof v !== "string") {
      fail("metadata_not_string", `__metadata__.${key} is ${show(v)}, not a string`, {
        key,
        value: v,
      });
    }
    metadata[key] = v;
  }
  if (metadata.format !== FORMAT) {
    fail("format_unknown", `format ${show(metadata.format)} is not "${FORMAT}"`, {
      value: metadata.format,
      allowed: [FORMAT],
    });
  }
  if (metadata.format_version !== FORMAT_VERSION) {
    fail(
      "format_version_unknown",
      `format_version ${show(metadata.format_version)} is not "${FORMAT_VERSION}"`,
      { value: metadata.format_version, allowed: [FORMAT_VERSION] },
    );
  }
  const unknown = Object.keys(metadata).filter((k) => !METADATA_KEYS.includes(k));
  if (unknown.length > 0) {
    fail(
      "metadata_key_unknown",
      `metadata keys ${unknown.join(", ")} are not part of format_version 1; allowed: ${METADATA_KEYS.join(", ")}`,
      { value: unknown, allowed: METADATA_KEYS },
    );
  }
  for (const key of REQUIRED_KEYS) {
    if (!Object.hasOwn(metadata, key)) {
      fail("metadata_key_missing", `metadata key "${key}" is missing`, { key });
    }
  }
  const meta: Meta = {
    metadata: { ...metadata },
    model: checkModel(metadata.model),
    factors: checkFactors(metadata.factors),
    rank: checkRankText(metadata.rank),
    modules: checkModulesText(metadata.modules),
  };
  if (metadata.labels !== undefined) meta.labels = parseLabelsText(metadata.labels);
  for (const key of OPTIONAL_KEYS) {
    if (metadata[key] !== undefined) checkOptional(key, metadata[key]);
  }
  return meta;
}
