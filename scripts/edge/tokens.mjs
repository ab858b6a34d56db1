// Demo tokens for the local edge, signed with the JWT_SECRET of .dev.vars (the API's own minting code).
import { mintToken } from "../../src/shared/tokens.ts";

/** Local demo tokens last a week: long enough for a dev server left running, short enough to expire. */
export const DEMO_TOKEN_TTL_SECONDS = 7 * 24 * 3600;

/** Tokens for every demo user plus one admin and one worker. */
export async function mintDemoTokens({
  users,
  secret,
  audience,
  ttlSeconds = DEMO_TOKEN_TTL_SECONDS,
}) {
  const mint = (sub, role) => mintToken({ sub, role, ttlSeconds, secret, audience });
  const byUser = {};
  for (const user of users) byUser[user] = await mint(user, "user");
  return {
    users: byUser,
    admin: await mint("admin", "admin"),
    worker: await mint("local-worker", "worker"),
  };
}
