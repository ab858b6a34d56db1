// A digest of the code that builds test models (the Python package and its pinned requirements).
// Model folders in .cache carry it, so a change to prepare rebuilds them instead of testing
// against stale files.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function codeStamp(repo: string): string {
  const hash = createHash("sha256");
  const pkg = join(repo, "scripts", "loraxs");
  const files = readdirSync(pkg)
    .filter((f) => f.endsWith(".py"))
    .sort()
    .map((f) => join(pkg, f));
  files.push(join(repo, "scripts", "requirements.txt"));
  for (const file of files) hash.update(file.slice(repo.length)).update(readFileSync(file));
  return hash.digest("hex");
}

const STAMP_FILE = ".code-stamp";

export function stampMatches(dir: string, stamp: string): boolean {
  const file = join(dir, STAMP_FILE);
  return existsSync(file) && readFileSync(file, "utf8").trim() === stamp;
}

export function writeStamp(dir: string, stamp: string): void {
  writeFileSync(join(dir, STAMP_FILE), `${stamp}\n`);
}
