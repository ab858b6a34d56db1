import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { DEFAULT_WRITE_RATE_LIMIT, RATE_WINDOW_SECONDS } from "../shared/limits.ts";
import type { Identity } from "../shared/tokens.ts";
import { identityOf } from "./auth.ts";
import { countWrite, pruneRateWindows } from "./db.ts";
import type { AppEnv } from "./env.ts";
import { ApiError } from "./errors.ts";

/** The per-minute write limit in force (the WRITE_RATE_LIMIT var, else the default). */
export function writeLimit(env: AppEnv["Bindings"]): number {
  const n = Number(env.WRITE_RATE_LIMIT ?? DEFAULT_WRITE_RATE_LIMIT);
  return Number.isSafeInteger(n) && n > 0 ? n : DEFAULT_WRITE_RATE_LIMIT;
}

/**
 * Counts one write of a user in the current fixed window (D1, exact) and answers 429 with
 * Retry-After past the limit. Workers and admins are trusted services and are not limited.
 */
export async function limitWrites(c: Context<AppEnv>, identity: Identity) {
  if (identity.role !== "user") return;
  const now = Date.now();
  const window = Math.floor(now / (RATE_WINDOW_SECONDS * 1000));
  const count = await countWrite(c.env.DB, `user:${identity.sub}`, window);
  const limit = writeLimit(c.env);
  if (count > limit) {
    const retryAfter = Math.max(
      1,
      Math.ceil(((window + 1) * RATE_WINDOW_SECONDS * 1000 - now) / 1000),
    );
    throw new ApiError(
      429,
      "rate.limited",
      `user ${JSON.stringify(identity.sub)} made ${count} writes this minute; the limit is ${limit}`,
      { "retry-after": String(retryAfter) },
    );
  }
  // The first write of a window clears windows older than the previous one.
  if (count === 1) c.executionCtx.waitUntil(pruneRateWindows(c.env.DB, window - 1));
}

/** Route middleware counting a write after the guard and before the body is read. */
export const limited = createMiddleware<AppEnv>(async (c, next) => {
  await limitWrites(c, identityOf(c));
  await next();
});
