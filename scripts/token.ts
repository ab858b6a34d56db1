// Prints a bearer token for the edge API.
//   npm run token -- --sub alice [--role user|worker|admin] [--ttl 3600] [--aud loraxs-edge]
// The secret comes from JWT_SECRET in the environment, else from .dev.vars (what `wrangler dev` uses).
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { mintToken, ROLES, type Role } from "../src/api/tokens.ts";

/** Default lifetime: one hour, so a pasted token does not outlive the session it was made for. */
const DEFAULT_TTL_SECONDS = 3600;

function fromDevVars(key: string): string | undefined {
  if (!existsSync(".dev.vars")) return undefined;
  for (const line of readFileSync(".dev.vars", "utf8").split("\n")) {
    const m = /^\s*([A-Z0-9_]+)\s*=\s*"?(.*?)"?\s*$/.exec(line);
    if (m && m[1] === key) return m[2];
  }
  return undefined;
}

function audienceFromWrangler(): string | undefined {
  if (!existsSync("wrangler.toml")) return undefined;
  return /^JWT_AUDIENCE\s*=\s*"([^"]+)"/m.exec(readFileSync("wrangler.toml", "utf8"))?.[1];
}

const { values } = parseArgs({
  options: {
    sub: { type: "string" },
    role: { type: "string", default: "user" },
    ttl: { type: "string", default: String(DEFAULT_TTL_SECONDS) },
    aud: { type: "string" },
  },
});

const fail = (message: string): never => {
  process.stderr.write(`token: ${message}\n`);
  process.exit(2);
};

const sub = values.sub ?? fail("--sub is required (the user, worker or admin id)");
const role = values.role as Role;
if (!ROLES.includes(role))
  fail(`--role ${JSON.stringify(values.role)} is not one of ${ROLES.join(", ")}`);
const ttlSeconds = Number(values.ttl);
if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0)
  fail(`--ttl ${JSON.stringify(values.ttl)} is not a positive number of seconds`);
const secret =
  process.env.JWT_SECRET ??
  fromDevVars("JWT_SECRET") ??
  fail("no JWT_SECRET in the environment or .dev.vars");
const audience = values.aud ?? audienceFromWrangler() ?? "loraxs-edge";

process.stdout.write(`${await mintToken({ sub, role, ttlSeconds, secret, audience })}\n`);
