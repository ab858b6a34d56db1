// RS256 / ES256 tokens from an identity provider, verified against its JWKS (JWKS_URL).
// The key set is served by a stubbed fetch in this isolate: no network.
import { env } from "cloudflare:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { verifyToken } from "../../src/api/auth.ts";
import type { Bindings } from "../../src/api/env.ts";
import { ApiError } from "../../src/api/errors.ts";

const JWKS_URL = "https://idp.example/.well-known/jwks.json";
const bindings = { ...env, JWKS_URL } as unknown as Bindings;
let es: CryptoKeyPair;
let rs: CryptoKeyPair;
let stranger: CryptoKeyPair;

beforeAll(async () => {
  es = (await generateKeyPair("ES256")) as CryptoKeyPair;
  rs = (await generateKeyPair("RS256")) as CryptoKeyPair;
  stranger = (await generateKeyPair("ES256")) as CryptoKeyPair;
  const keys = [
    { ...(await exportJWK(es.publicKey)), kid: "es-1", alg: "ES256", use: "sig" },
    { ...(await exportJWK(rs.publicKey)), kid: "rs-1", alg: "RS256", use: "sig" },
  ];
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url !== JWKS_URL) throw new Error(`unexpected fetch ${url}`);
    return new Response(JSON.stringify({ keys }), {
      headers: { "content-type": "application/json" },
    });
  });
});
afterAll(() => vi.restoreAllMocks());

const sign = (key: CryptoKey, alg: string, kid: string, claims: Record<string, unknown> = {}) =>
  new SignJWT({ role: "user", ...claims })
    .setProtectedHeader({ alg, kid })
    .setSubject("idp-user")
    .setAudience((claims.aud as string | undefined) ?? env.JWT_AUDIENCE)
    .setExpirationTime("10m")
    .sign(key);

async function codeOf(p: Promise<unknown>) {
  try {
    await p;
    return "ok";
  } catch (err) {
    return err instanceof ApiError ? `${err.status} ${err.code}` : String(err);
  }
}

describe("JWKS tokens", () => {
  it("accepts ES256 and RS256 tokens signed by the provider's keys", async () => {
    expect(await verifyToken(await sign(es.privateKey, "ES256", "es-1"), bindings)).toEqual({
      sub: "idp-user",
      role: "user",
    });
    expect(await verifyToken(await sign(rs.privateKey, "RS256", "rs-1"), bindings)).toEqual({
      sub: "idp-user",
      role: "user",
    });
  });

  it("rejects a key the provider does not publish, a wrong kid, the wrong audience", async () => {
    expect(
      await codeOf(verifyToken(await sign(stranger.privateKey, "ES256", "es-1"), bindings)),
    ).toBe("401 auth.bad_signature");
    expect(await codeOf(verifyToken(await sign(es.privateKey, "ES256", "nobody"), bindings))).toBe(
      "401 auth.unknown_key",
    );
    expect(
      await codeOf(
        verifyToken(await sign(es.privateKey, "ES256", "es-1", { aud: "other" }), bindings),
      ),
    ).toBe("401 auth.wrong_audience");
  });

  it("without JWKS_URL, ES256 is not an allowed algorithm", async () => {
    const token = await sign(es.privateKey, "ES256", "es-1", { sub: "x2" });
    expect(await codeOf(verifyToken(token, env as unknown as Bindings))).toBe(
      "401 auth.alg_not_allowed",
    );
  });
});
