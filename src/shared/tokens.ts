import { SignJWT } from "jose";

/** Roles a token may carry: a user owns adapters, a worker trains them, an admin publishes models. */
export type Role = "user" | "worker" | "admin";
export const ROLES: readonly Role[] = ["user", "worker", "admin"];

/** Who a verified token says the caller is. */
export type Identity = { sub: string; role: Role };

export type MintOptions = {
  sub: string;
  role: Role;
  ttlSeconds: number;
  secret: string;
  audience: string;
};

/**
 * Mints an HS256 token the edge API accepts (used by the start script, the CLI and tests).
 *
 * @example
 * const token = await mintToken({ sub: "alice", role: "user", ttlSeconds: 3600, secret, audience: "loraxs-edge" });
 */
export async function mintToken({ sub, role, ttlSeconds, secret, audience }: MintOptions) {
  if (!ROLES.includes(role))
    throw new Error(`role ${JSON.stringify(role)} is not one of ${ROLES.join(", ")}`);
  if (!secret) throw new Error("secret is empty");
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ role })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(sub)
    .setAudience(audience)
    .setIssuedAt(now)
    .setExpirationTime(now + ttlSeconds)
    .sign(new TextEncoder().encode(secret));
}
