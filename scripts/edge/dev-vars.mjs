// The local secrets file wrangler dev reads (.dev.vars): JWT_SECRET is made once, randomly.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { ScriptError } from "./log.mjs";

/** 32 random bytes: the HS256 key size RFC 7518 asks for (at least the hash output). */
const SECRET_BYTES = 32;

export function parseDevVars(text) {
  const vars = {};
  for (const line of text.split("\n")) {
    const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!match || line.trimStart().startsWith("#")) continue;
    vars[match[1]] = match[2].replace(/^"(.*)"$/, "$1");
  }
  return vars;
}

/** Returns JWT_SECRET from `path`, appending a random one first if the file or the key is missing. */
export function ensureJwtSecret(path) {
  const text = existsSync(path) ? readFileSync(path, "utf8") : "";
  const existing = parseDevVars(text).JWT_SECRET;
  if (existing) return { secret: existing, created: false };
  if (existing === "") throw new ScriptError(`${path} sets JWT_SECRET to an empty value`);
  const secret = randomBytes(SECRET_BYTES).toString("base64url");
  const prefix = text && !text.endsWith("\n") ? `${text}\n` : text;
  writeFileSync(path, `${prefix}JWT_SECRET="${secret}"\n`, { mode: 0o600 });
  return { secret, created: true };
}
