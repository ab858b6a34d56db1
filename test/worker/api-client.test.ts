// The one API client (src/client/api) against the worker. At compile time: every route it calls
// is a route of the API's app (its hono AppType, built from the same zod schemas as
// /v1/openapi.json) with that method, and the API's JSON answer fits the client's type, so a
// renamed route or a changed answer breaks `npm run typecheck`. At run time: its answers,
// its ApiError (code, status, request id), and its retries.
import { SELF } from "cloudflare:test";
import type { Hono } from "hono";
import { describe, expect, it } from "vitest";
import type { app } from "../../src/api/app.ts";
import { EdgeApi, type Routes } from "../../src/client/api/index.ts";
import {
  type ApiError,
  ConflictError,
  NotFoundError,
  OfflineError,
} from "../../src/client/errors.ts";
import {
  adapter,
  BASE,
  publishModel,
  publishModelWithAdapter,
  putAdapter,
  token,
  uid,
} from "./helpers.ts";

type Schema = typeof app extends Hono<infer _E, infer S, infer _B> ? S : never;
/** The API's 2xx JSON answer of a route and method (bytes and empty answers are not JSON). */
type Answer<P extends keyof Schema, M extends keyof Schema[P]> =
  Extract<Schema[P][M], { status: 200 | 201 }> extends { output: infer O } ? O : never;
/** For each route the client calls: `true` when the API has it and answers what the client reads. */
type Check = {
  [P in keyof Routes]: P extends keyof Schema
    ? {
        [M in keyof Routes[P]]: M extends keyof Schema[P]
          ? Routes[P][M] extends Uint8Array | null
            ? true
            : unknown extends Routes[P][M]
              ? true
              : Answer<P, M> extends Routes[P][M]
                ? true
                : { answer: Answer<P, M>; client: Routes[P][M] }
          : { missingMethod: M; route: P };
      }
    : { missingRoute: P };
};
type AllTrue<T> = { [P in keyof T]: T[P][keyof T[P]] extends true ? true : T[P] };
/** A compile error here names the route the client calls and the API no longer serves as typed. */
const contract: { [P in keyof Routes]: true } = {} as AllTrue<Check>;
void contract;

const viaWorker: typeof fetch = (input, init) => SELF.fetch(input as RequestInfo, init);

describe("the API client", () => {
  it("reads health, versions and jobs, and restores a version", async () => {
    const { model, user } = await publishModelWithAdapter("typed");

    expect(await new EdgeApi({ api: BASE, fetch: viaWorker }).health()).toEqual({ ok: true });

    const api = new EdgeApi({ api: BASE, token: await token(user), fetch: viaWorker });
    const stored = await api.putAdapter(model, user, adapter(model));
    expect(stored.version).toBe(2);
    const versions = await api.listVersions(model, user);
    expect(versions.map((v) => v.version)).toEqual([2, 1]);
    expect(await api.adapterEtag(model, user)).toBe(stored.etag.replace(/"/g, ""));
    const restored = await api.restoreVersion(model, user, 1);
    expect(restored.version).toBe(3);

    const job = await api.createJob(model, user, { kind: "text", texts: ["typed"] }, { steps: 3 });
    expect(job.status).toBe("queued");
    expect((await api.getJob(job.id)).id).toBe(job.id);
  });

  it("throws ApiError with the API's code, status and request id", async () => {
    const model = await publishModel("typed");
    const user = uid("u");
    const api = new EdgeApi({ api: BASE, token: await token(user), fetch: viaWorker });
    const missing = await api.getAdapter(model, user).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(NotFoundError);
    expect(missing).toMatchObject({ status: 404 });
    expect((missing as ApiError).requestId).toMatch(/.+/);
    await putAdapter(model, user, adapter(model));
    const stale = await api
      .putAdapter(model, user, adapter(model), { ifMatch: '"0000"' })
      .catch((e: unknown) => e);
    expect(stale).toBeInstanceOf(ConflictError);
    expect((stale as ApiError).code).toMatch(/.+/);
  });

  it("retries an idempotent request after a 503 and a network failure, never a PUT of an adapter", async () => {
    const seen: string[] = [];
    let failures = 2;
    const flaky: typeof fetch = async (input, init) => {
      seen.push(init?.method ?? "GET");
      if (failures === 2) {
        failures -= 1;
        return new Response("busy", { status: 503 });
      }
      if (failures === 1) {
        failures -= 1;
        throw new TypeError("connection reset");
      }
      return viaWorker(input, init);
    };
    expect(await new EdgeApi({ api: BASE, fetch: flaky }).health()).toEqual({ ok: true });
    expect(seen).toEqual(["GET", "GET", "GET"]);

    seen.length = 0;
    const down: typeof fetch = async (_input, init) => {
      seen.push(init?.method ?? "GET");
      throw new TypeError("connection refused");
    };
    const api = new EdgeApi({ api: BASE, token: "t", fetch: down });
    await expect(api.putAdapter("m", "u", new Uint8Array(1))).rejects.toBeInstanceOf(OfflineError);
    expect(seen).toEqual(["PUT"]);
  });
});
