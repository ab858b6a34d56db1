// The client against the real edge API (`wrangler dev` on 127.0.0.1 with real local KV, R2, D1):
// loading a published model, fetching adapters with ETag revalidation, refusing foreign ones,
// uploading with If-Match, typed errors, and the offline fallback once the API is gone.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureModel } from "../../../harness/models.ts";
import { maxAbsDiff, type Reference, readReference } from "../../../harness/reference.ts";
import {
  AdapterClient,
  AdapterRefusedError,
  AuthError,
  ConflictError,
  loadModel,
  memoryCache,
  NotFoundError,
  type PersonalModel,
  RateLimitError,
  ValidationError,
} from "../../../src/client/index.ts";
import { decodeAdapter, encodeAdapter } from "../../../src/format/index.ts";
import { type LocalApi, publishModel, startApi, WRITE_LIMIT } from "./helpers/wrangler.ts";

/** fp32 CPU against PyTorch (see decoder.test.ts). */
const TOLERANCE = 5e-5;

let dir: string;
let ref: Reference;
let api: LocalApi;
let model: PersonalModel;
/** Every request the client made, with the status it got: the real fetch, observed. */
const seen: { method: string; url: string; status: number; ifNoneMatch: string | null }[] = [];
const observedFetch: typeof fetch = async (input, init) => {
  const response = await fetch(input, init);
  const headers = new Headers(init?.headers);
  seen.push({
    method: init?.method ?? "GET",
    url: String(input),
    status: response.status,
    ifNoneMatch: headers.get("if-none-match"),
  });
  return response;
};
const adapterFile = (n: 1 | 2) =>
  new Uint8Array(readFileSync(join(dir, `reference-adapter-${n}.safetensors`)));
const logitsOf = (name: string) => ref.cases.find((c) => c.name === name)?.logits_last?.[0] ?? [];
const ids = () => ref.cases[0]?.input_ids ?? [];

beforeAll(async () => {
  dir = await ensureModel("tiny-llama");
  ref = readReference(dir);
  api = await startApi();
  await publishModel(api, dir);
  model = await loadModel(`${api.url}/v1/models/tiny-llama`, {
    device: "cpu",
    cache: memoryCache(),
  });
});
afterAll(async () => {
  await model?.dispose();
  await api?.stop();
});

describe("client against the local edge API", () => {
  it("loads the model from the API's manifest and files and reproduces the base logits", async () => {
    expect(model.manifest.id).toBe("tiny-llama");
    const [logits] = await model.forward(ids());
    expect(maxAbsDiff(logits as Float32Array, logitsOf("base"))).toBeLessThan(TOLERANCE);
  });

  it("fetches a user's adapter, then revalidates with If-None-Match (304, no decode)", async () => {
    const client = model.adapterClient({
      api: api.url,
      token: () => api.token("alice"),
      fetch: observedFetch,
    });
    const stored = await client.uploadAdapter("alice", adapterFile(1));
    expect(stored.version).toBe(1);
    const first = await model.useUser(client, "alice");
    expect(first?.source).toBe("network");
    expect(first?.etag).toBe(`"${stored.etag}"`);
    const [logits] = await model.forward(ids());
    expect(maxAbsDiff(logits as Float32Array, logitsOf("random-1"))).toBeLessThan(TOLERANCE);

    seen.length = 0;
    const second = await client.fetchAdapter("alice");
    expect(second.source).toBe("revalidated");
    expect(seen).toEqual([
      expect.objectContaining({ status: 304, ifNoneMatch: `"${stored.etag}"` }),
    ]);
    expect(second.adapter).toBe(first?.adapter); // the decoded copy, not decoded again
  });

  it("a user without an adapter gets the base model", async () => {
    const client = model.adapterClient({ api: api.url, token: () => api.token("nobody") });
    await expect(client.fetchAdapter("nobody")).rejects.toThrow(NotFoundError);
    expect(await model.useUser(client, "nobody")).toBeNull();
    const [logits] = await model.forward(ids());
    expect(maxAbsDiff(logits as Float32Array, logitsOf("base"))).toBeLessThan(TOLERANCE);
  });

  it("refuses an adapter trained on other factors; the base model keeps working", async () => {
    const client = model.adapterClient({ api: api.url, token: () => api.token("dave") });
    await client.uploadAdapter("dave", adapterFile(2));
    // This device's copy of the model was republished with new factors: the stored R no longer fits.
    const republished = new AdapterClient({
      api: api.url,
      model: "tiny-llama",
      expect: { ...model.expectations, factors: `sha256:${"0".repeat(64)}` },
      token: () => api.token("dave"),
      cache: memoryCache(),
    });
    model.setAdapter(decodeAdapter(adapterFile(1)), "previous user");
    const error = await model.useUser(republished, "dave").catch((e) => e);
    expect(error).toBeInstanceOf(AdapterRefusedError);
    expect(error.code).toBe("factors_mismatch");
    expect(error.message).toContain("dave");
    expect(model.adapterLabel).toBe("zeros");
    const [logits] = await model.forward(ids());
    expect(maxAbsDiff(logits as Float32Array, logitsOf("base"))).toBeLessThan(TOLERANCE);
  });

  it("refuses an adapter damaged in transit, keeps no copy of it, and serves the base model", async () => {
    const client = model.adapterClient({ api: api.url, token: () => api.token("mallory") });
    await client.uploadAdapter("mallory", adapterFile(2));
    // The real API's answer, cut short on the way (a broken proxy): same headers, fewer bytes.
    const damaging: typeof fetch = async (input, init) => {
      const r = await fetch(input, init);
      const body = new Uint8Array(await r.arrayBuffer());
      return new Response(body.subarray(0, body.byteLength - 100), {
        status: r.status,
        headers: r.headers,
      });
    };
    const cache = memoryCache();
    const expectations = model.expectations;
    const token = () => api.token("mallory");
    const broken = new AdapterClient({
      api: api.url,
      model: "tiny-llama",
      expect: expectations,
      token,
      cache,
      fetch: damaging,
    });
    model.setAdapter(decodeAdapter(adapterFile(1)), "previous user");
    const error = await model.useUser(broken, "mallory").catch((e) => e);
    expect(error).toBeInstanceOf(AdapterRefusedError);
    expect(error.code).toBe("offsets_out_of_bounds");
    expect(model.adapterLabel).toBe("zeros");
    expect(await cache.get("adapters/tiny-llama/mallory")).toBeUndefined();
    const intact = new AdapterClient({
      api: api.url,
      model: "tiny-llama",
      expect: expectations,
      token,
      cache,
    });
    expect((await intact.fetchAdapter("mallory")).source).toBe("network");
  });

  it("uploads R with If-Match; a stale ETag is a ConflictError (412)", async () => {
    const client = model.adapterClient({ api: api.url, token: () => api.token("erin") });
    const R = decodeAdapter(adapterFile(2)).R;
    const v1 = await client.uploadAdapter("erin", R);
    const v2 = await client.uploadAdapter(
      "erin",
      R.map((x) => x * 0.5),
      { ifMatch: v1.etag },
    );
    expect(v2.version).toBe(2);
    const stale = await client.uploadAdapter("erin", R, { ifMatch: v1.etag }).catch((e) => e);
    expect(stale).toBeInstanceOf(ConflictError);
    expect(stale.status).toBe(412);
    // The encoded upload (F16 by default) is what the user now gets back.
    const fetched = await client.fetchAdapter("erin");
    expect(fetched.adapter.dtype).toBe("F16");
    expect(fetched.adapter.metadata.source).toBe("client");
    expect(
      maxAbsDiff(
        fetched.adapter.R,
        R.map((x) => x * 0.5),
      ),
    ).toBeLessThan(1e-3);
  });

  it("surfaces validation, auth and rate-limit errors as typed errors", async () => {
    const client = model.adapterClient({ api: api.url, token: () => api.token("frank") });
    const foreign = encodeAdapter({
      ...decodeAdapter(adapterFile(1)),
      metadata: {},
      factors: `sha256:${"1".repeat(64)}`,
    });
    const invalid = await client.uploadAdapter("frank", foreign).catch((e) => e);
    expect(invalid).toBeInstanceOf(ValidationError);
    expect([invalid.status, invalid.code]).toEqual([422, "adapter.factors_mismatch"]);

    const asBob = model.adapterClient({ api: api.url, token: () => api.token("bob") });
    const forbidden = await asBob.fetchAdapter("alice").catch((e) => e);
    expect(forbidden).toBeInstanceOf(AuthError);
    expect(forbidden.status).toBe(403);
    // A failed switch never leaves the previous user's R in place.
    model.setAdapter(decodeAdapter(adapterFile(1)), "previous user");
    await expect(model.useUser(asBob, "alice")).rejects.toThrow(AuthError);
    expect(model.adapterLabel).toBe("zeros");
    const badToken = model.adapterClient({ api: api.url, token: "not-a-jwt" });
    expect((await badToken.fetchAdapter("alice").catch((e) => e)).status).toBe(401);

    const R = decodeAdapter(adapterFile(1)).R;
    let limited: unknown;
    for (let i = 0; i <= WRITE_LIMIT && limited === undefined; i++) {
      limited = await client.uploadAdapter("frank", R).then(
        () => undefined,
        (e) => e,
      );
    }
    expect(limited).toBeInstanceOf(RateLimitError);
    expect((limited as RateLimitError).retryAfterSeconds).toBeGreaterThan(0);
  });

  it("forgets the local copy of an adapter the user deleted", async () => {
    const cache = memoryCache();
    const token = () => api.token("gina");
    const client = new AdapterClient({
      api: api.url,
      model: "tiny-llama",
      expect: model.expectations,
      token,
      cache,
    });
    await client.uploadAdapter("gina", adapterFile(1));
    await client.fetchAdapter("gina");
    expect(await cache.get("adapters/tiny-llama/gina")).toBeDefined();
    const deleted = await fetch(client.url("gina"), {
      method: "DELETE",
      headers: { authorization: `Bearer ${await token()}` },
    });
    expect(deleted.status).toBe(204);
    await expect(client.fetchAdapter("gina")).rejects.toThrow(NotFoundError);
    expect(await cache.get("adapters/tiny-llama/gina")).toBeUndefined();
  });

  it("falls back to the last good copy when the API is unreachable", async () => {
    const cache = memoryCache();
    const client = new AdapterClient({
      api: api.url,
      model: "tiny-llama",
      expect: model.expectations,
      token: () => api.token("alice"),
      cache,
    });
    const online = await client.fetchAdapter("alice");
    await api.stop();
    const offline = await model.useUser(client, "alice");
    expect(offline?.source).toBe("offline");
    expect(offline?.etag).toBe(online.etag);
    const [logits] = await model.forward(ids());
    expect(maxAbsDiff(logits as Float32Array, logitsOf("random-1"))).toBeLessThan(TOLERANCE);
  });
});
