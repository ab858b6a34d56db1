// Signed tokens whose claims have the wrong JSON type: every role, every route kind, always a
// 401 with the documented code, never a 500 and never a 403 (the claim must not reach authorization).
import { env } from "cloudflare:test";
import { SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import type { Role } from "../../src/shared/tokens.ts";
import {
  adapter,
  adapterPath,
  call,
  errorOf,
  putAdapter,
  signHs256,
  token,
  userWithVersionsForTests,
} from "./helpers.ts";

const now = () => Math.floor(Date.now() / 1000);
// The user has one adapter version before the tests run.
const { model, user } = userWithVersionsForTests("claims", 0.1);

/** Signs any claims set with the test secret (jose's builder would refuse a non-string sub). */
function signed(claims: Record<string, unknown>) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .sign(new TextEncoder().encode(env.JWT_SECRET));
}

/** One request each role is allowed to make, so a well-typed token of that role gets a 2xx. */
const requests: Record<Role, (bearer: string) => Promise<Response>> = {
  user: (bearer) => call("GET", adapterPath(model, user), { token: bearer }),
  worker: (bearer) => call("POST", "/v1/jobs/claim", { token: bearer, json: { max: 1 } }),
  admin: (bearer) => call("GET", `${adapterPath(model, user)}/versions`, { token: bearer }),
};

const subjects: Record<Role, string> = { user, worker: "gpu-1", admin: "ops" };

const wrongTypes: unknown[] = [[], ["x"], 7, 0, true, false, null, { id: "x" }, 1.5];

/** Each bad claim with the code docs/api.md gives for it. */
function cases(role: Role) {
  const sub = subjects[role];
  const base = { sub, role, aud: env.JWT_AUDIENCE, exp: now() + 600 };
  const out: { name: string; claims: Record<string, unknown>; code: string }[] = [];
  for (const v of [...wrongTypes, [sub], ""]) {
    out.push({
      name: `sub ${JSON.stringify(v)}`,
      claims: { ...base, sub: v },
      code: "auth.bad_subject",
    });
  }
  for (const v of [...wrongTypes, [role], { role }]) {
    out.push({
      name: `role ${JSON.stringify(v)}`,
      claims: { ...base, role: v },
      code: "auth.bad_role",
    });
  }
  const future = now() + 600;
  for (const v of [String(future), [future], { exp: future }, true, null]) {
    out.push({
      name: `exp ${JSON.stringify(v)}`,
      claims: { ...base, exp: v },
      code: "auth.bad_claims",
    });
  }
  for (const claim of ["nbf", "iat"]) {
    for (const v of [String(now()), [now()], true]) {
      out.push({
        name: `${claim} ${JSON.stringify(v)}`,
        claims: { ...base, [claim]: v },
        code: "auth.bad_claims",
      });
    }
  }
  const { sub: _s, ...noSub } = base;
  out.push({ name: "no sub", claims: noSub, code: "auth.bad_subject" });
  const { role: _r, ...noRole } = base;
  out.push({ name: "no role", claims: noRole, code: "auth.bad_role" });
  const { exp: _e, ...noExp } = base;
  out.push({ name: "no exp", claims: noExp, code: "auth.bad_claims" });
  out.push({
    name: "nbf in the future",
    claims: { ...base, nbf: now() + 300 },
    code: "auth.token_not_yet_valid",
  });
  return out;
}

describe.each(["user", "worker", "admin"] as const)("claim types, %s tokens", (role) => {
  it("a well-typed token of this role succeeds on the route used below", async () => {
    const res = await requests[role](
      await signed({
        sub: subjects[role],
        role,
        aud: env.JWT_AUDIENCE,
        exp: now() + 600,
        iat: now(),
      }),
    );
    expect(res.status).toBe(200);
    // The same via the project's own minting.
    expect((await requests[role](await token(subjects[role], role))).status).toBe(200);
  });

  it("sub, role, exp, nbf or iat of the wrong JSON type is 401 with its code", async () => {
    const seen: string[] = [];
    for (const c of cases(role)) {
      const res = await requests[role](await signed(c.claims));
      const error = res.status === 401 ? await errorOf(res) : { code: `status ${res.status}` };
      seen.push(`${c.name}: ${res.status} ${error.code}`);
      expect(`${c.name}: ${res.status} ${error.code}`).toBe(`${c.name}: 401 ${c.code}`);
      expect(res.headers.get("www-authenticate")).toContain("invalid_token");
    }
    expect(seen.length).toBeGreaterThan(30);
  });
});

describe("claim types on writes", () => {
  it("a worker token with an array sub never stores a lease owner or an adapter", async () => {
    const bad = await signed({
      sub: ["gpu-1"],
      role: "worker",
      aud: env.JWT_AUDIENCE,
      exp: now() + 600,
    });
    const claim = await call("POST", "/v1/jobs/claim", { token: bad, json: {} });
    expect(claim.status).toBe(401);
    expect((await errorOf(claim)).code).toBe("auth.bad_subject");
    const put = await putAdapter(model, user, adapter(model, { fill: 0.9 }), {}, bad);
    expect(put.status).toBe(401);
    const versions = await call("GET", `${adapterPath(model, user)}/versions`, {
      token: await token(user),
    });
    expect(((await versions.json()) as { versions: unknown[] }).versions).toHaveLength(1);
  });

  it("a user token whose sub is an array holding the owner's id is 401, not 403 or 200", async () => {
    const bad = await signed({
      sub: [user],
      role: "user",
      aud: env.JWT_AUDIENCE,
      exp: now() + 600,
    });
    for (const res of [
      await call("GET", adapterPath(model, user), { token: bad }),
      await putAdapter(model, user, adapter(model, { fill: 0.8 }), {}, bad),
      await call("DELETE", adapterPath(model, user), { token: bad }),
    ]) {
      expect(res.status).toBe(401);
      expect((await errorOf(res)).code).toBe("auth.bad_subject");
    }
    expect((await call("GET", adapterPath(model, user), { token: await token(user) })).status).toBe(
      200,
    );
  });

  it("an exp too large to be finite (1e400 in JSON) is refused", async () => {
    const header = btoa(JSON.stringify({ alg: "HS256", typ: "JWT" })).replace(/=+$/, "");
    const payload = btoa(`{"sub":"${user}","role":"user","aud":"${env.JWT_AUDIENCE}","exp":1e400}`)
      .replace(/=+$/, "")
      .replace(/\+/g, "-")
      .replace(/\//g, "_");
    const res = await call("GET", adapterPath(model, user), {
      token: await signHs256(header, payload),
    });
    expect(res.status).toBe(401);
    expect((await errorOf(res)).code).toBe("auth.bad_claims");
  });
});
