import { env } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import {
  adapter,
  adapterPath,
  call,
  callWithRawBody,
  errorOf,
  jobsPath,
  publishModel,
  putAdapter,
  token,
  uid,
} from "./helpers.ts";

describe("errors are JSON everywhere", () => {
  it("404 for an unknown route, 405 with Allow for a known path", async () => {
    const res = await call("GET", "/v1/nothing-here");
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(await errorOf(res)).toEqual({
      code: "route.not_found",
      message: "no route GET /v1/nothing-here",
    });

    const patch = await call("PATCH", "/v1/models/m/users/u/adapter");
    expect(patch.status).toBe(405);
    expect((await errorOf(patch)).code).toBe("route.method_not_allowed");
    expect(patch.headers.get("allow")).toBe("GET, PUT, DELETE");
    const post = await call("POST", "/v1/health");
    expect(post.status).toBe(405);
  });

  it("bad input never turns into a 500", async () => {
    const model = await publishModel("hyg");
    const user = uid("u");
    const t = await token(user);
    const attempts = [
      call("PUT", adapterPath(model, user), {
        token: t,
        body: new Uint8Array([255, 255, 255, 255, 255, 255, 255, 255]),
      }),
      call("PUT", adapterPath(model, user), {
        token: t,
        body: "x",
        headers: { "content-length": "abc" },
      }),
      callWithRawBody("POST", jobsPath(model, user), t, "\u0000"),
      call("POST", jobsPath(model, user), { token: t, json: null }),
      call("GET", `/v1/models/${model}/files/%00`),
      call("GET", `/v1/models/${"x".repeat(300)}`),
      call("GET", `${adapterPath(model, user)}/versions/99999999999999999999999`, { token: t }),
      call("PUT", adapterPath(model, user), {
        token: t,
        body: adapter(model),
        headers: { "if-match": '"", ,W/' },
      }),
    ];
    for (const res of await Promise.all(attempts)) {
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect((await errorOf(res)).code).toMatch(/^[a-z]+\.[a-z_]+$/);
    }
  });
});

describe("request ids, CORS, logs", () => {
  it("every answer carries X-Request-Id; a well-formed incoming one is kept", async () => {
    const fresh = await call("GET", "/v1/health");
    expect(fresh.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    const kept = await call("GET", "/v1/health", { headers: { "x-request-id": "trace-123" } });
    expect(kept.headers.get("x-request-id")).toBe("trace-123");
    const bogus = await call("GET", "/v1/health", { headers: { "x-request-id": "<script>" } });
    expect(bogus.headers.get("x-request-id")).not.toBe("<script>");
    const error = await call("GET", "/v1/missing");
    expect(error.headers.get("x-request-id")).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  it("CORS allows the configured origins and exposes ETag and X-Adapter-Version", async () => {
    const origin = "http://127.0.0.1:8787";
    const pre = await call("OPTIONS", "/v1/models/m/users/u/adapter", {
      headers: {
        origin,
        "access-control-request-method": "PUT",
        "access-control-request-headers": "authorization,if-match",
      },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe(origin);
    expect(pre.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("if-match");
    const get = await call("GET", "/v1/health", { headers: { origin } });
    expect(get.headers.get("access-control-allow-origin")).toBe(origin);
    expect(get.headers.get("access-control-expose-headers")).toContain("X-Adapter-Version");
    expect(get.headers.get("access-control-expose-headers")).toContain("ETag");
    const foreign = await call("GET", "/v1/health", {
      headers: { origin: "https://evil.example" },
    });
    expect(foreign.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("logs", () => {
  it("one JSON line per request, with the request id and code, never the token or the body", async () => {
    const model = await publishModel("log");
    const user = uid("u");
    const t = await token(user);
    const lines: string[] = [];
    const levels = env as unknown as Record<string, string>;
    const before = levels.LOG_LEVEL ?? "info";
    levels.LOG_LEVEL = "info";
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => {
      lines.push(String(line));
    });
    try {
      await call("PUT", adapterPath(model, user), {
        token: t,
        body: adapter(model, { note: "secret-note-in-body" }),
        headers: { "x-request-id": "log-test-1" },
      });
      await call("GET", adapterPath(model, uid("other")), {
        token: t,
        headers: { "x-request-id": "log-test-2" },
      });
    } finally {
      spy.mockRestore();
      levels.LOG_LEVEL = before;
    }
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed.find((l) => l.request_id === "log-test-1")).toMatchObject({
      level: "info",
      method: "PUT",
      status: 201,
      role: "user",
      sub: user,
    });
    expect(parsed.find((l) => l.request_id === "log-test-2")).toMatchObject({
      level: "warn",
      status: 403,
      code: "auth.forbidden_user",
    });
    const all = lines.join("\n");
    expect(all).not.toContain(t);
    expect(all).not.toContain(t.split(".")[2]);
    expect(all).not.toContain("secret-note-in-body");
  });
});

describe("write rate limit", () => {
  it("the 61st write of a user in a minute is 429 with Retry-After; other users are not affected", async () => {
    const model = await publishModel("rate");
    const user = uid("u");
    const t = await token(user);
    // Rejected writes count too: the limit protects the validation work.
    const junk = new Uint8Array([1, 2, 3]);
    for (let i = 0; i < 60; i++) {
      const res = await call("PUT", adapterPath(model, user), { token: t, body: junk });
      expect(res.status).toBe(422);
    }
    const limited = await putAdapter(model, user, adapter(model));
    expect(limited.status).toBe(429);
    const error = await errorOf(limited);
    expect(error.code).toBe("rate.limited");
    expect(error.message).toContain("the limit is 60");
    const retry = Number(limited.headers.get("retry-after"));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    // Reads are not limited, other users are not limited, workers are not limited.
    expect((await call("GET", `${adapterPath(model, user)}/versions`, { token: t })).status).toBe(
      200,
    );
    const other = uid("u");
    expect((await putAdapter(model, other, adapter(model))).status).toBe(201);
    expect(
      (await putAdapter(model, user, adapter(model), {}, await token("gpu", "worker"))).status,
    ).toBe(201);
  });
});

describe("OpenAPI", () => {
  it("documents every route from the request schemas", async () => {
    const res = await call("GET", "/v1/openapi.json");
    expect(res.status).toBe(200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<
        string,
        Record<string, { requestBody?: { content: Record<string, { schema: unknown }> } }>
      >;
      components: { securitySchemes: Record<string, unknown>; schemas: Record<string, unknown> };
    };
    expect(doc.openapi).toBe("3.1.0");
    const routes = Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`),
    );
    for (const r of [
      "GET /v1/health",
      "GET /v1/models",
      "GET /v1/models/{model}",
      "GET /v1/models/{model}/files/{name}",
      "PUT /v1/models/{model}/manifest",
      "PUT /v1/models/{model}/files/{name}",
      "GET /v1/models/{model}/users/{user}/adapter",
      "PUT /v1/models/{model}/users/{user}/adapter",
      "DELETE /v1/models/{model}/users/{user}/adapter",
      "GET /v1/models/{model}/users/{user}/adapter/versions",
      "GET /v1/models/{model}/users/{user}/adapter/versions/{version}",
      "POST /v1/models/{model}/users/{user}/adapter/versions/{version}/restore",
      "POST /v1/models/{model}/users/{user}/jobs",
      "GET /v1/jobs/{id}",
      "POST /v1/jobs/claim",
      "POST /v1/jobs/{id}/heartbeat",
      "GET /v1/jobs/{id}/data",
      "POST /v1/jobs/{id}/complete",
      "POST /v1/jobs/{id}/fail",
    ]) {
      expect(routes).toContain(r);
    }
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
    // The job body in the document is the schema that validates it.
    expect(doc.components.schemas.CreateJob).toBeDefined();
    expect(JSON.stringify(doc.components.schemas.TrainingData)).toContain("labels");
    expect(JSON.stringify(doc.components.schemas.Manifest)).toContain("schema_version");
  });
});
