import type { Identity } from "../shared/tokens.ts";

/** Bindings of the worker: wrangler.toml's KV, R2, D1 and vars, plus secrets and optional vars. */
export type Bindings = {
  KV: KVNamespace;
  BUCKET: R2Bucket;
  DB: D1Database;
  JWT_AUDIENCE: string;
  CORS_ORIGINS: string;
  /** HS256 secret (`wrangler secret put JWT_SECRET`; `.dev.vars` locally). */
  JWT_SECRET?: string;
  /** Optional JWKS endpoint for RS256 / ES256 tokens from an identity provider. */
  JWKS_URL?: string;
  /** Writes per subject per minute (default DEFAULT_WRITE_RATE_LIMIT). */
  WRITE_RATE_LIMIT?: string;
  /** "info" (default, one line per request) | "warn" (4xx and 5xx) | "error" (5xx) | "none". */
  LOG_LEVEL?: string;
};

export type Variables = {
  requestId: string;
  identity?: Identity;
  /** An error code set by a handler for the access log. */
  errorCode?: string;
};

export type AppEnv = { Bindings: Bindings; Variables: Variables };
