// Merges figures into bench/results/worker.json the way bench/worker_results.py does: keys
// replaced one by one, objects merged (job_to_adapter_p50_s keeps the other setups' entries).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

export const RESULTS = join(import.meta.dirname, "results", "worker.json");

/** Returns the path written. Keys are sorted, as Python's json.dumps(sort_keys=True) writes them. */
export function mergeResults(updates, path = RESULTS) {
  const current = existsSync(path) ? JSON.parse(readFileSync(path, "utf8")) : {};
  for (const [key, value] of Object.entries(updates)) {
    const old = current[key];
    const bothObjects = [value, old].every((v) => v && typeof v === "object" && !Array.isArray(v));
    current[key] = bothObjects ? { ...old, ...value } : value;
  }
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(sortKeys(current), null, 1)}\n`);
  return path;
}

function sortKeys(value) {
  if (!value || typeof value !== "object" || Array.isArray(value)) return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, sortKeys(value[k])]),
  );
}
