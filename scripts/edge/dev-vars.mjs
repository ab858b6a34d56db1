// The local secrets file wrangler dev reads (.dev.vars): JWT_SECRET is made once, randomly.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseDevVars } from "../../src/cli/dev-vars.ts";
import { ScriptError } from "./log.mjs";

export { parseDevVars };

/** 32 random bytes: the HS256 key size RFC 7518 asks for (at least the hash output). */
const SECRET_BYTES = 32;

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
