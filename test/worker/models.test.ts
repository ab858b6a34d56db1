import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import {
  call,
  callWithRawBody,
  decoderManifest,
  errorOf,
  FACTORS,
  publish,
  sha256,
  token,
  uid,
} from "./helpers.ts";

const model = uid("files");
const bytes = Uint8Array.from({ length: 1000 }, (_, i) => i % 251);
let fileEtag = "";

beforeAll(async () => {
  await publish(decoderManifest(model));
  const res = await call("PUT", `/v1/models/${model}/files/weights.bin`, {
    token: await token("ops", "admin"),
    body: bytes,
    headers: {
      "content-type": "application/octet-stream",
      "content-length": String(bytes.byteLength),
    },
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as { bytes: number; etag: string };
  expect(body.bytes).toBe(1000);
  fileEtag = body.etag;
});

const file = (headers: Record<string, string> = {}) =>
  call("GET", `/v1/models/${model}/files/weights.bin`, { headers });

describe("manifests", () => {
  it("lists and serves published manifests with an ETag", async () => {
    const list = await call("GET", "/v1/models");
    expect(list.status).toBe(200);
    const { models } = (await list.json()) as { models: { id: string; rank: number }[] };
    expect(models.find((m) => m.id === model)).toMatchObject({ id: model, rank: 4 });

    const one = await call("GET", `/v1/models/${model}`);
    expect(one.status).toBe(200);
    // Served byte for byte as published.
    expect(await one.text()).toBe(JSON.stringify(decoderManifest(model)));
    const etag = one.headers.get("etag") ?? "";
    expect(etag).toMatch(/^".+"$/);
    expect(
      (await call("GET", `/v1/models/${model}`, { headers: { "if-none-match": etag } })).status,
    ).toBe(304);
    const missing = await call("GET", "/v1/models/not-published");
    expect(missing.status).toBe(404);
    expect((await errorOf(missing)).code).toBe("model.not_found");
  });

  it("publishing needs an admin and a valid manifest whose id matches the path", async () => {
    const id = uid("pub");
    const path = `/v1/models/${id}/manifest`;
    const asUser = await call("PUT", path, {
      token: await token("alice"),
      json: decoderManifest(id),
    });
    expect(asUser.status).toBe(403);
    const asWorker = await call("PUT", path, {
      token: await token("w", "worker"),
      json: decoderManifest(id),
    });
    expect(asWorker.status).toBe(403);
    const anon = await call("PUT", path, { json: decoderManifest(id) });
    expect(anon.status).toBe(401);

    const admin = await token("ops", "admin");
    const mismatch = await call("PUT", path, { token: admin, json: decoderManifest("another-id") });
    expect(mismatch.status).toBe(422);
    expect((await errorOf(mismatch)).code).toBe("manifest.id_mismatch");
    const { modules: _drop, ...incomplete } = decoderManifest(id);
    const invalid = await call("PUT", path, { token: admin, json: incomplete });
    expect(invalid.status).toBe(422);
    expect((await errorOf(invalid)).code).toBe("manifest.invalid");
    const badJson = await callWithRawBody("PUT", path, admin, "{");
    expect(badJson.status).toBe(400);
    const huge = await callWithRawBody("PUT", path, admin, `{"pad":"${"x".repeat(1024 * 1024)}"}`);
    expect(huge.status).toBe(413);
    expect((await call("GET", `/v1/models/${id}`)).status).toBe(404);
  });
});

describe("model files", () => {
  it("serves the file with immutable caching, an ETag and Accept-Ranges", async () => {
    const res = await file();
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(res.headers.get("accept-ranges")).toBe("bytes");
    expect(res.headers.get("etag")).toBe(fileEtag);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(bytes);
  });

  it("304 on If-None-Match", async () => {
    const res = await file({ "if-none-match": fileEtag });
    expect(res.status).toBe(304);
  });

  it("206 for a range, a suffix and an open range", async () => {
    const cases: [string, number, number][] = [
      ["bytes=10-19", 10, 19],
      ["bytes=-5", 995, 999],
      ["bytes=990-", 990, 999],
      ["bytes=995-5000", 995, 999],
    ];
    for (const [range, start, end] of cases) {
      const res = await file({ range });
      expect(res.status, range).toBe(206);
      expect(res.headers.get("content-range")).toBe(`bytes ${start}-${end}/1000`);
      expect(new Uint8Array(await res.arrayBuffer())).toEqual(bytes.slice(start, end + 1));
    }
  });

  it("416 for a range past the end; unknown range syntax serves the whole file", async () => {
    const res = await file({ range: "bytes=1000-1010" });
    expect(res.status).toBe(416);
    expect(res.headers.get("content-range")).toBe("bytes */1000");
    expect((await errorOf(res)).code).toBe("range.not_satisfiable");
    const multi = await file({ range: "bytes=0-1,5-6" });
    expect(multi.status).toBe(200);
    expect((await multi.arrayBuffer()).byteLength).toBe(1000);
  });

  it("404 for a missing file, 400 for a bad name", async () => {
    const res = await call("GET", `/v1/models/${model}/files/nothing.bin`);
    expect(res.status).toBe(404);
    expect((await errorOf(res)).code).toBe("model.file_not_found");
    const bad = await call("GET", `/v1/models/${model}/files/..%2F..%2Fsecret`);
    expect(bad.status).toBe(400);
  });

  it("a file listed in the manifest must match its sha256; uploads need an admin and a length", async () => {
    const admin = await token("ops", "admin");
    const factors = new Uint8Array([1, 2, 3, 4]);
    const id = uid("digest");
    const digest = `sha256:${await sha256(factors)}`;
    await publish(decoderManifest(id, digest));
    const put = (body: Uint8Array<ArrayBuffer>) =>
      call("PUT", `/v1/models/${id}/files/factors.safetensors`, {
        token: admin,
        body,
        headers: { "content-length": String(body.byteLength) },
      });
    const wrong = await put(new Uint8Array([9, 9, 9, 9]));
    expect(wrong.status).toBe(422);
    expect((await errorOf(wrong)).code).toBe("model.file_digest_mismatch");
    expect(await env.BUCKET.head(`models/${id}/factors.safetensors`)).toBeNull();
    expect((await put(factors)).status).toBe(201);

    const asUser = await call("PUT", `/v1/models/${id}/files/x.bin`, {
      token: await token("alice"),
      body: factors,
    });
    expect(asUser.status).toBe(403);
    const manifestByFile = await call("PUT", `/v1/models/${id}/files/manifest.json`, {
      token: admin,
      body: factors,
      headers: { "content-length": "4" },
    });
    expect(manifestByFile.status).toBe(400);
    // A streamed body without Content-Length cannot be streamed into R2.
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new Uint8Array([1, 2, 3]));
        controller.close();
      },
    });
    const noLength = await call("PUT", `/v1/models/${id}/files/streamed.bin`, {
      token: admin,
      body: stream,
    });
    expect(noLength.status).toBe(411);
    expect((await errorOf(noLength)).code).toBe("request.length_required");
    expect(FACTORS).not.toBe(digest);
  });
});
