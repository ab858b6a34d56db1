import { env } from "cloudflare:test";
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { adapter, call, errorOf, publishModelWithAdapter, signHs256, token } from "./helpers.ts";

const b64url = (v: unknown) =>
  btoa(JSON.stringify(v)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
const secret = () => new TextEncoder().encode(env.JWT_SECRET);
const now = () => Math.floor(Date.now() / 1000);

async function signed(claims: Record<string, unknown>, key = secret(), alg = "HS256") {
  return new SignJWT(claims).setProtectedHeader({ alg }).sign(key);
}

async function expect401(path: string, bearer: string | undefined, code: string) {
  const res = await call(
    "GET",
    path,
    bearer === undefined ? {} : { headers: { authorization: bearer } },
  );
  expect(res.status).toBe(401);
  expect(res.headers.get("www-authenticate")).toContain("Bearer");
  expect((await errorOf(res)).code).toBe(code);
}

describe("bearer tokens", () => {
  it("a valid token reads its own adapter", async () => {
    const { path, user } = await publishModelWithAdapter("auth");
    const res = await call("GET", path, { token: await token(user) });
    expect(res.status).toBe(200);
  });

  it("rejects a missing header, a non-bearer header and a malformed token", async () => {
    const { path } = await publishModelWithAdapter("auth");
    await expect401(path, undefined, "auth.missing_token");
    await expect401(path, "Basic dXNlcjpwdw==", "auth.malformed_header");
    await expect401(path, "Bearer not-a-jwt", "auth.malformed_token");
    // Correctly signed, but the payload is not a JSON object.
    await expect401(
      path,
      `Bearer ${await signHs256(b64url({ alg: "HS256" }), btoa("[1,2]"))}`,
      "auth.malformed_token",
    );
  });

  it("rejects alg none, even with valid claims", async () => {
    const { path, user } = await publishModelWithAdapter("auth");
    const claims = { sub: user, role: "user", aud: env.JWT_AUDIENCE, exp: now() + 600 };
    await expect401(
      path,
      `Bearer ${b64url({ alg: "none", typ: "JWT" })}.${b64url(claims)}.`,
      "auth.alg_not_allowed",
    );
    // RS256 without a configured JWKS_URL is not accepted either.
    await expect401(
      path,
      `Bearer ${b64url({ alg: "RS256" })}.${b64url(claims)}.c2ln`,
      "auth.alg_not_allowed",
    );
  });

  it("rejects an expired token", async () => {
    const { path, user } = await publishModelWithAdapter("auth");
    const jwt = await signed({ sub: user, role: "user", aud: env.JWT_AUDIENCE, exp: now() - 60 });
    await expect401(path, `Bearer ${jwt}`, "auth.token_expired");
  });

  it("rejects the wrong audience and a missing audience", async () => {
    const { path, user } = await publishModelWithAdapter("auth");
    const wrong = await signed({ sub: user, role: "user", aud: "someone-else", exp: now() + 600 });
    await expect401(path, `Bearer ${wrong}`, "auth.wrong_audience");
    const none = await signed({ sub: user, role: "user", exp: now() + 600 });
    await expect401(path, `Bearer ${none}`, "auth.wrong_audience");
  });

  it("rejects a bad signature (another secret, or a tampered payload)", async () => {
    const { path, user } = await publishModelWithAdapter("auth");
    const claims = { sub: user, role: "user", aud: env.JWT_AUDIENCE, exp: now() + 600 };
    const other = await signed(claims, new TextEncoder().encode("not-the-secret"));
    await expect401(path, `Bearer ${other}`, "auth.bad_signature");
    const good = await token(user);
    const [h, , s] = good.split(".");
    const tampered = `${h}.${b64url({ ...claims, role: "admin" })}.${s}`;
    await expect401(path, `Bearer ${tampered}`, "auth.bad_signature");
  });

  it("requires exp, a known role and a well-formed sub", async () => {
    const { path, user } = await publishModelWithAdapter("auth");
    const noExp = await signed({ sub: user, role: "user", aud: env.JWT_AUDIENCE });
    await expect401(path, `Bearer ${noExp}`, "auth.bad_claims");
    const badRole = await signed({
      sub: user,
      role: "root",
      aud: env.JWT_AUDIENCE,
      exp: now() + 600,
    });
    await expect401(path, `Bearer ${badRole}`, "auth.bad_role");
    const badSub = await signed({
      sub: "a/b",
      role: "user",
      aud: env.JWT_AUDIENCE,
      exp: now() + 600,
    });
    await expect401(path, `Bearer ${badSub}`, "auth.bad_subject");
  });

  it("a role outside the route's list is 403, not 401", async () => {
    const { path, model, user } = await publishModelWithAdapter("auth");
    const res = await call("PUT", path, {
      token: await token("ops", "admin"),
      body: adapter(model),
    });
    expect(res.status).toBe(403);
    expect((await errorOf(res)).code).toBe("auth.forbidden_role");
    const del = await call("DELETE", path, { token: await token("w1", "worker") });
    expect(del.status).toBe(403);
    // Still there.
    expect((await call("GET", path, { token: await token(user) })).status).toBe(200);
  });
});
