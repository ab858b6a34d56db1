// The one reader of `.dev.vars` (wrangler's local secrets: `KEY=value` lines), for the CLI and
// the scripts (scripts/edge/dev-vars.mjs).
import { readFile } from "node:fs/promises";
import { join } from "node:path";

/** `KEY=value` lines (optionally `export KEY=...`, values optionally quoted); `#` lines skipped. */
export function parseDevVars(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m || line.trimStart().startsWith("#")) continue;
    let value = m[2] as string;
    if (/^".*"$|^'.*'$/.test(value)) value = value.slice(1, -1);
    vars[m[1] as string] = value;
  }
  return vars;
}

/** Reads the `.dev.vars` file of folder `dir`; a missing file is {}. */
export async function readDevVars(dir: string): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await readFile(join(dir, ".dev.vars"), "utf8");
  } catch {
    return {};
  }
  return parseDevVars(text);
}
