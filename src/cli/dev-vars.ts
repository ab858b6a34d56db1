import { readFile } from "node:fs/promises";
import { join } from "node:path";

/** Reads `KEY=value` lines of a `.dev.vars` file (wrangler's local secrets); missing file → {}. */
export async function readDevVars(dir: string): Promise<Record<string, string>> {
  let text: string;
  try {
    text = await readFile(join(dir, ".dev.vars"), "utf8");
  } catch {
    return {};
  }
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
