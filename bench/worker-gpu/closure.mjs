// Prints the node_modules folders `wrangler dev` and the API need at run time (wrangler's and the
// API's dependencies, resolved as Node resolves them in package-lock.json, only those installed
// here), one a line. @img/* (image resizing for miniflare's Images binding) is left out.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dirname, "..", "..");
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")).packages;
const ROOTS = ["wrangler", "hono", "zod", "@hono/zod-openapi", "jose"];
const seen = new Set();

function visit(name, from) {
  for (
    let at = from;
    ;
    at = at.includes("/node_modules/") ? at.slice(0, at.lastIndexOf("/node_modules/")) : ""
  ) {
    const key = `${at ? `${at}/` : ""}node_modules/${name}`;
    if (lock[key]) {
      if (seen.has(key)) return;
      seen.add(key);
      const { dependencies = {}, optionalDependencies = {} } = lock[key];
      for (const dep of Object.keys({ ...dependencies, ...optionalDependencies })) visit(dep, key);
      return;
    }
    if (!at) return;
  }
}
for (const name of ROOTS) visit(name, "");
for (const dir of [...seen].sort())
  if (existsSync(join(root, dir)) && !dir.includes("/@img/")) console.log(dir);
