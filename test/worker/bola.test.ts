// Object-level authorization: a token for one user never reads, writes, lists or deletes
// another user's data, on any route (OWASP API1).
import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import {
  adapter,
  adapterPath,
  call,
  createJob,
  errorOf,
  jobsPath,
  token,
  uid,
  userWithVersionsForTests,
} from "./helpers.ts";

// The victim's adapter versions 1 and 2 (fills 0.3 and 0.4) and a job are in place before the tests.
const { model, user: victim } = userWithVersionsForTests("bola", 0.3, 0.4);
const original = adapter(model, { fill: 0.3 });
const attacker = uid("attacker");
let jobId = "";

beforeAll(async () => {
  const res = await createJob(model, victim, { data: { kind: "text", texts: ["private diary"] } });
  jobId = ((await res.json()) as { job: { id: string } }).job.id;
});

describe("a user token on another user's objects is 403 auth.forbidden_user", () => {
  const path = () => adapterPath(model, victim);
  const routes: [string, string, () => string, () => BodyInit | undefined][] = [
    ["read adapter", "GET", path, () => undefined],
    ["write adapter", "PUT", path, () => adapter(model, { fill: 0.9 })],
    ["delete adapter", "DELETE", path, () => undefined],
    ["list versions", "GET", () => `${path()}/versions`, () => undefined],
    ["read a version", "GET", () => `${path()}/versions/1`, () => undefined],
    ["restore a version", "POST", () => `${path()}/versions/1/restore`, () => undefined],
    [
      "create a job",
      "POST",
      () => jobsPath(model, victim),
      () => JSON.stringify({ data: { kind: "text", texts: ["x"] } }),
    ],
    ["read a job", "GET", () => `/v1/jobs/${jobId}`, () => undefined],
  ];
  for (const [name, method, p, body] of routes) {
    it(name, async () => {
      const res = await call(method, p(), {
        token: await token(attacker),
        body: body() ?? null,
        headers: {
          "content-type":
            method === "POST" && p().endsWith("/jobs")
              ? "application/json"
              : "application/octet-stream",
        },
      });
      expect(res.status).toBe(403);
      const error = await errorOf(res);
      expect(error.code).toBe("auth.forbidden_user");
      expect(error.message).toContain(attacker);
    });
  }

  it("the victim's data is untouched afterwards", async () => {
    const auth = await token(victim);
    const list = await call("GET", `${adapterPath(model, victim)}/versions`, { token: auth });
    expect(((await list.json()) as { versions: unknown[] }).versions).toHaveLength(2);
    const one = await call("GET", `${adapterPath(model, victim)}/versions/1`, { token: auth });
    expect(new Uint8Array(await one.arrayBuffer())).toEqual(original);
    const jobs = await env.DB.prepare("SELECT count(*) AS n FROM jobs WHERE user = ?1")
      .bind(victim)
      .first<{ n: number }>();
    expect(jobs?.n).toBe(1);
  });

  it("a user token cannot use worker routes on another user's job", async () => {
    const t = await token(attacker);
    for (const [method, p] of [
      ["POST", `/v1/jobs/${jobId}/heartbeat`],
      ["GET", `/v1/jobs/${jobId}/data`],
      ["POST", `/v1/jobs/${jobId}/complete`],
      ["POST", `/v1/jobs/${jobId}/fail`],
      ["POST", "/v1/jobs/claim"],
    ] as const) {
      const res = await call(method, p, {
        token: t,
        json:
          method === "POST" && !p.endsWith("complete") ? { lease_id: "x", reason: "x" } : undefined,
        headers: { "x-lease-id": "x" },
      });
      expect(res.status, `${method} ${p}`).toBe(403);
      expect((await errorOf(res)).code).toBe("auth.forbidden_role");
    }
    // Even its own job's worker routes are closed to a user.
    const data = await call("GET", `/v1/jobs/${jobId}/data`, {
      token: await token(victim),
      headers: { "x-lease-id": "x" },
    });
    expect(data.status).toBe(403);
  });
});
