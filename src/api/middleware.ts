import type { Context } from "hono";
import { cors } from "hono/cors";
import { createMiddleware } from "hono/factory";
import { readBytes } from "./body.ts";
import type { AppEnv } from "./env.ts";
import { ApiError, badRequest } from "./errors.ts";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Gives every request an id (a well-formed incoming X-Request-Id is kept), echoes it, and
 * writes one JSON log line per request: never headers, tokens or bodies.
 */
export const requestContext = createMiddleware<AppEnv>(async (c, next) => {
  const started = Date.now();
  const incoming = c.req.header("x-request-id");
  const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : crypto.randomUUID();
  c.set("requestId", requestId);
  await next();
  try {
    c.res.headers.set("x-request-id", requestId);
  } catch {
    c.res = new Response(c.res.body, c.res);
    c.res.headers.set("x-request-id", requestId);
  }
  log(c, started);
});

/** LOG_LEVEL thresholds: "info" logs every request, "warn" 4xx and 5xx, "error" 5xx, "none" nothing. */
const RANK: Record<string, number> = { info: 0, warn: 1, error: 2, none: 3 };

function log(c: Context<AppEnv>, started: number) {
  const status = c.res.status;
  const level = status >= 500 ? "error" : status >= 400 ? "warn" : "info";
  if ((RANK[level] ?? 0) < (RANK[c.env.LOG_LEVEL ?? "info"] ?? 0)) return;
  const identity = c.get("identity");
  const line = {
    level,
    msg: "request",
    request_id: c.get("requestId"),
    method: c.req.method,
    path: new URL(c.req.url).pathname,
    status,
    ms: Date.now() - started,
    role: identity?.role,
    sub: identity?.sub,
    code: c.get("errorCode"),
  };
  console.log(JSON.stringify(line));
}

// One CORS handler per CORS_ORIGINS value (the var is fixed per deployment).
const corsHandlers = new Map<string, ReturnType<typeof cors>>();

/** CORS for the origins in CORS_ORIGINS (comma separated); etags and versions are readable. */
export const corsFromEnv = createMiddleware<AppEnv>((c, next) => {
  const origins = c.env.CORS_ORIGINS ?? "";
  let handler = corsHandlers.get(origins);
  if (!handler) {
    const allowed = new Set(origins.split(",").map((s) => s.trim()));
    handler = cors({
      origin: (origin) => (allowed.has(origin) ? origin : null),
      allowMethods: ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"],
      allowHeaders: [
        "Authorization",
        "Content-Type",
        "If-Match",
        "If-None-Match",
        "Range",
        "X-Lease-Id",
        "X-Request-Id",
      ],
      exposeHeaders: [
        "ETag",
        "X-Adapter-Version",
        "X-Request-Id",
        "Retry-After",
        "Content-Range",
        "Accept-Ranges",
      ],
      maxAge: 600,
    });
    corsHandlers.set(origins, handler);
  }
  return handler(c, next);
});

const JSON_TYPE = /^application\/([\w.-]+\+)?json$/i;

/**
 * Reads a JSON body under `limit` (413), answers 415 for another media type and 400 for bad
 * JSON, then hands the text to the route's zod validator (which answers 422 on a wrong shape).
 */
export function jsonBody(limit: number, what = "body") {
  return createMiddleware<AppEnv>(async (c, next) => {
    const bytes = await readBytes(c.req.raw, limit, what);
    if (bytes.byteLength) {
      const type = (c.req.header("content-type") ?? "").split(";")[0]?.trim() ?? "";
      if (!JSON_TYPE.test(type)) {
        throw new ApiError(
          415,
          "request.unsupported_media_type",
          `${what} has Content-Type ${JSON.stringify(type)}; expected application/json`,
        );
      }
      const text = new TextDecoder().decode(bytes);
      try {
        JSON.parse(text);
      } catch (err) {
        throw badRequest(
          "request.bad_json",
          `${what} is not valid JSON: ${(err as Error).message}`,
        );
      }
      c.req.bodyCache.text = Promise.resolve(text) as never;
    }
    await next();
  });
}
