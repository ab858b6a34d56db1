import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  type CryptoKey as JoseCryptoKey,
  type JWTPayload,
  jwtVerify,
} from "jose";
import { CLOCK_TOLERANCE_SECONDS, VERIFIED_TOKEN_CACHE } from "../shared/limits.ts";
import { type Identity, ROLES, type Role } from "../shared/tokens.ts";
import type { AppEnv, Bindings } from "./env.ts";
import { ApiError, forbidden } from "./errors.ts";
import { USER_ID } from "./ids.ts";

export type { Identity };

const HMAC_ALGS = ["HS256"];
const JWKS_ALGS = ["RS256", "ES256"];

const unauthorized = (code: string, message: string) =>
  new ApiError(401, code, message, { "www-authenticate": `Bearer error="invalid_token"` });

// Imported once per isolate: importing a key costs more than verifying a signature.
const hmacKeys = new Map<string, Promise<CryptoKey>>();
function hmacKey(secret: string) {
  let key = hmacKeys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["verify"],
    );
    hmacKeys.set(secret, key);
  }
  return key;
}

const jwksSets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
function jwks(url: string) {
  let set = jwksSets.get(url);
  if (!set) {
    set = createRemoteJWKSet(new URL(url));
    jwksSets.set(url, set);
  }
  return set;
}

// Tokens verified in this isolate, until their exp: a user's repeated reads skip the HMAC and
// the claim checks. Keyed by the whole token, so a changed byte is verified afresh.
const verified = new Map<string, { identity: Identity; until: number }>();

/** Verifies a bearer token (cached per isolate until its exp) and returns who it names. */
export async function verifyToken(token: string, env: Bindings): Promise<Identity> {
  const hit = verified.get(token);
  if (hit && hit.until > Date.now()) return hit.identity;
  if (hit) verified.delete(token);
  const { identity, exp } = await verifyUncached(token, env);
  if (verified.size >= VERIFIED_TOKEN_CACHE) {
    const oldest = verified.keys().next().value;
    if (oldest !== undefined) verified.delete(oldest);
  }
  verified.set(token, { identity, until: exp * 1000 });
  return identity;
}

/** Verifies a bearer token; every failure is a 401 with a specific code. */
async function verifyUncached(
  token: string,
  env: Bindings,
): Promise<{ identity: Identity; exp: number }> {
  let alg: string | undefined;
  try {
    alg = decodeProtectedHeader(token).alg;
  } catch {
    throw unauthorized(
      "auth.malformed_token",
      "the bearer token is not a JWS compact serialization",
    );
  }
  const allowed = [...(env.JWT_SECRET ? HMAC_ALGS : []), ...(env.JWKS_URL ? JWKS_ALGS : [])];
  if (!alg || !allowed.includes(alg)) {
    throw unauthorized(
      "auth.alg_not_allowed",
      `token alg ${JSON.stringify(alg ?? null)} is not allowed; allowed: ${allowed.join(", ") || "none configured"}`,
    );
  }
  let payload: JWTPayload;
  try {
    const options = {
      audience: env.JWT_AUDIENCE,
      algorithms: [alg],
      requiredClaims: ["exp", "sub"],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
    };
    payload = HMAC_ALGS.includes(alg)
      ? (await jwtVerify(token, (await hmacKey(env.JWT_SECRET ?? "")) as JoseCryptoKey, options))
          .payload
      : (await jwtVerify(token, jwks(env.JWKS_URL ?? ""), options)).payload;
  } catch (err) {
    throw mapJoseError(err, env.JWT_AUDIENCE);
  }
  return { identity: checkClaims(payload), exp: payload.exp as number };
}

const typeOf = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

/**
 * Checks the JSON type of every claim this API reads before any of them is used: `sub` and
 * `role` must be strings (a regex test would stringify an array or a number), `exp` a finite
 * number, `nbf` and `iat` numbers when present. jose has checked the signature, the audience
 * and the time claims' values by now.
 */
export function checkClaims(payload: JWTPayload): Identity {
  for (const claim of ["exp", "nbf", "iat"] as const) {
    const value: unknown = payload[claim];
    if (value === undefined && claim !== "exp") continue;
    if (typeof value !== "number" || !Number.isFinite(value)) {
      throw unauthorized(
        "auth.bad_claims",
        `token claim ${JSON.stringify(claim)} must be a finite JSON number; got ${typeOf(value)}`,
      );
    }
  }
  const role: unknown = payload.role;
  if (typeof role !== "string" || !ROLES.includes(role as Role)) {
    throw unauthorized(
      "auth.bad_role",
      `token role ${JSON.stringify(role ?? null)} (${typeOf(role)}) is not one of the strings ${ROLES.join(", ")}`,
    );
  }
  const sub: unknown = payload.sub;
  if (typeof sub !== "string" || !USER_ID.test(sub)) {
    throw unauthorized(
      "auth.bad_subject",
      `token sub ${JSON.stringify(sub ?? null)} (${typeOf(sub)}) is not a string matching ${USER_ID.source}`,
    );
  }
  return { sub, role: role as Role };
}

function mapJoseError(err: unknown, audience: string): ApiError {
  if (err instanceof errors.JWTExpired)
    return unauthorized("auth.token_expired", `token expired: ${err.message}`);
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === "sub") {
      return unauthorized("auth.bad_subject", "token has no sub claim");
    }
    if (err.claim === "nbf" && err.reason === "check_failed") {
      return unauthorized("auth.token_not_yet_valid", `token is not valid yet: ${err.message}`);
    }
    if (err.claim === "aud") {
      return unauthorized(
        "auth.wrong_audience",
        `token audience is not ${JSON.stringify(audience)}`,
      );
    }
    return unauthorized(
      "auth.bad_claims",
      `token claim ${JSON.stringify(err.claim)} is invalid: ${err.message}`,
    );
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return unauthorized("auth.bad_signature", "token signature does not verify");
  }
  if (err instanceof errors.JOSEAlgNotAllowed)
    return unauthorized("auth.alg_not_allowed", err.message);
  if (err instanceof errors.JWKSNoMatchingKey) return unauthorized("auth.unknown_key", err.message);
  if (err instanceof errors.JOSEError) return unauthorized("auth.malformed_token", err.message);
  throw err;
}

/** The caller's identity, verified once per request. */
export async function identify(c: Context<AppEnv>): Promise<Identity> {
  const known = c.get("identity");
  if (known) return known;
  const header = c.req.header("authorization");
  if (!header)
    throw unauthorized("auth.missing_token", "an Authorization: Bearer <JWT> header is required");
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match?.[1])
    throw unauthorized("auth.malformed_header", 'the Authorization header is not "Bearer <JWT>"');
  const identity = await verifyToken(match[1], c.env);
  c.set("identity", identity);
  return identity;
}

/**
 * Checks who may act: the caller's role must be in `roles`, and a `user` may act only on its own
 * `user` path segment (object-level authorization).
 */
export async function authorize(
  c: Context<AppEnv>,
  roles: readonly Role[],
  owner?: string,
): Promise<Identity> {
  const identity = await identify(c);
  if (!roles.includes(identity.role)) {
    throw forbidden(
      "auth.forbidden_role",
      `role ${JSON.stringify(identity.role)} may not do this; allowed: ${roles.join(", ")}`,
    );
  }
  if (identity.role === "user" && owner !== undefined && identity.sub !== owner) {
    throw forbidden(
      "auth.forbidden_user",
      `token for user ${JSON.stringify(identity.sub)} may not act on user ${JSON.stringify(owner)}`,
    );
  }
  return identity;
}

/**
 * Route middleware: authenticates and authorizes before the body is read or validated.
 * With `owner`, a `user` token may only act on the `:user` path segment.
 *
 * @example
 * createRoute({ ..., middleware: [guard(["user", "admin"], "owner")] })
 */
export function guard(roles: readonly Role[], owner?: "owner") {
  return createMiddleware<AppEnv>(async (c, next) => {
    await authorize(c, roles, owner ? c.req.param("user") : undefined);
    await next();
  });
}

/** The identity a guard verified for this request. */
export function identityOf(c: Context<AppEnv>): Identity {
  const identity = c.get("identity");
  if (!identity) throw new Error("route has no guard: identity is missing");
  return identity;
}
