// Version allocation under concurrency and the canonical form of numeric path and query parameters.
import { describe, expect, it } from "vitest";
import {
  adapter,
  adapterPath,
  call,
  decoderModelForTests,
  errorOf,
  putAdapter,
  sha256,
  token,
  uid,
  userWithVersions,
} from "./helpers.ts";

const model = decoderModelForTests("versions");

type Version = { version: number; etag: string; source: string };

async function versionsOf(user: string, limit = 1000) {
  const res = await call("GET", `${adapterPath(model, user)}/versions?limit=${limit}`, {
    token: await token(user),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { versions: Version[] }).versions;
}

/** Every upload stored once, numbered 1..n without gaps; the current adapter is version n. */
async function expectAllLanded(user: string, uploads: Uint8Array[], responses: Response[]) {
  const statuses = responses.map((r) => r.status);
  expect(statuses.filter((s) => s !== 201)).toEqual([]);
  const answers = (await Promise.all(responses.map((r) => r.json()))) as Version[];
  const n = uploads.length;
  // Each writer got its own number.
  expect(answers.map((a) => a.version).sort((a, b) => a - b)).toEqual(
    Array.from({ length: n }, (_, i) => i + 1),
  );
  const versions = await versionsOf(user);
  expect(versions.map((v) => v.version)).toEqual(Array.from({ length: n }, (_, i) => n - i));
  const hashes = await Promise.all(uploads.map(sha256));
  expect(versions.map((v) => v.etag).sort()).toEqual([...hashes].sort());
  // The number each writer was told holds its bytes.
  for (const [i, a] of answers.entries()) {
    expect(versions.find((v) => v.version === a.version)?.etag).toBe(hashes[i]);
  }
  const current = await call("GET", adapterPath(model, user), { token: await token(user) });
  expect(current.headers.get("x-adapter-version")).toBe(String(n));
  expect(current.headers.get("etag")).toBe(`"${versions[0]?.etag}"`);
  const newest = await call("GET", `${adapterPath(model, user)}/versions/${n}`, {
    token: await token(user),
  });
  expect(new Uint8Array(await current.arrayBuffer())).toEqual(
    new Uint8Array(await newest.arrayBuffer()),
  );
}

describe("concurrent uploads without If-Match", () => {
  it("100 concurrent worker PUTs: 100 × 201, versions 1..100, KV on version 100", async () => {
    const user = uid("u");
    const worker = await token("gpu-1", "worker");
    const uploads = Array.from({ length: 100 }, (_, i) => adapter(model, { fill: (i + 1) / 1000 }));
    const responses = await Promise.all(uploads.map((b) => putAdapter(model, user, b, {}, worker)));
    await expectAllLanded(user, uploads, responses);
  }, 120_000);

  it("50 concurrent user PUTs (under the write limit): all 201", async () => {
    const user = uid("u");
    const uploads = Array.from({ length: 50 }, (_, i) => adapter(model, { fill: (i + 1) / 100 }));
    const auth = await token(user);
    const responses = await Promise.all(uploads.map((b) => putAdapter(model, user, b, {}, auth)));
    await expectAllLanded(user, uploads, responses);
  }, 120_000);

  it("concurrent restores and PUTs interleave without gaps", async () => {
    const { user, auth } = await userWithVersions(model, 0.5);
    const jobs = Array.from({ length: 20 }, (_, i) =>
      i % 2
        ? putAdapter(model, user, adapter(model, { fill: i / 10 }), {}, auth)
        : call("POST", `${adapterPath(model, user)}/versions/1/restore`, { token: auth }),
    );
    const results = await Promise.all(jobs);
    expect(results.map((r) => r.status).filter((s) => s !== 201)).toEqual([]);
    const versions = await versionsOf(user);
    expect(versions.map((v) => v.version)).toEqual(Array.from({ length: 21 }, (_, i) => 21 - i));
    expect(versions.filter((v) => v.source === "restore")).toHaveLength(10);
  }, 60_000);

  it("If-Match still makes exactly one of many concurrent writers win", async () => {
    const user = uid("u");
    const base = adapter(model, { fill: 0.1 });
    await putAdapter(model, user, base);
    const ifMatch = { "if-match": `"${await sha256(base)}"` };
    const worker = await token("gpu-1", "worker");
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        putAdapter(model, user, adapter(model, { fill: 0.2 + i / 100 }), ifMatch, worker),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 412)).toHaveLength(19);
    expect((await versionsOf(user)).map((v) => v.version)).toEqual([2, 1]);
  }, 60_000);

  it("If-Match: * needs an adapter; a list of tags matches any of them", async () => {
    const user = uid("u");
    const star = await putAdapter(model, user, adapter(model), { "if-match": "*" });
    expect(star.status).toBe(412);
    const base = adapter(model, { fill: 0.3 });
    await putAdapter(model, user, base);
    expect((await putAdapter(model, user, adapter(model), { "if-match": "*" })).status).toBe(201);
    const list = `"${"0".repeat(64)}", W/"${await sha256(adapter(model))}"`;
    expect(
      (await putAdapter(model, user, adapter(model, { fill: 0.4 }), { "if-match": list })).status,
    ).toBe(201);
    expect(
      (await putAdapter(model, user, adapter(model, { fill: 0.5 }), { "if-match": list })).status,
    ).toBe(412);
    expect((await versionsOf(user)).map((v) => v.version)).toEqual([3, 2, 1]);
  });
});

describe("numeric parameters are canonical positive integers", () => {
  const bad = [
    "1e3",
    "01",
    "+1",
    "1.0",
    "0",
    "-1",
    "0x10",
    "1_000",
    "%201",
    "1%20",
    "１",
    "9007199254740992",
    "99999999999999999999",
  ];

  it("versions/:version: non-canonical forms are 400 request.bad_param, never another version", async () => {
    // 1000 versions would make 1e3 exist; version 1 makes 01, +1 and 1.0 exist if read as numbers.
    const { user, auth } = await userWithVersions(model, 0.1);
    for (const v of bad) {
      for (const [method, suffix] of [
        ["GET", ""],
        ["POST", "/restore"],
      ] as const) {
        const res = await call(method, `${adapterPath(model, user)}/versions/${v}${suffix}`, {
          token: auth,
        });
        expect(`${method} ${v}: ${res.status}`).toBe(`${method} ${v}: 400`);
        expect((await errorOf(res)).code).toBe("request.bad_param");
      }
    }
    expect((await versionsOf(user)).map((x) => x.version)).toEqual([1]);
    // Canonical and absent: 404; canonical and present: 200; empty segment: no such route.
    const missing = await call("GET", `${adapterPath(model, user)}/versions/1000`, { token: auth });
    expect(missing.status).toBe(404);
    expect((await errorOf(missing)).code).toBe("adapter.version_not_found");
    const largest = await call("GET", `${adapterPath(model, user)}/versions/9007199254740991`, {
      token: auth,
    });
    expect(largest.status).toBe(404);
    expect(
      (await call("GET", `${adapterPath(model, user)}/versions/1`, { token: auth })).status,
    ).toBe(200);
    const empty = await call("GET", `${adapterPath(model, user)}/versions/`, { token: auth });
    expect(empty.status).toBe(404);
    expect((await errorOf(empty)).code).toBe("route.not_found");
  });

  it("versions?limit=: non-canonical forms are 400 request.bad_query; 1..1000 work", async () => {
    const { user, auth } = await userWithVersions(model, 0.1, 0.2);
    for (const v of [...bad, "", "1001", "1e2"]) {
      const res = await call("GET", `${adapterPath(model, user)}/versions?limit=${v}`, {
        token: auth,
      });
      expect(`limit=${v}: ${res.status}`).toBe(`limit=${v}: 400`);
      expect((await errorOf(res)).code).toBe("request.bad_query");
    }
    for (const [limit, n] of [
      ["1", 1],
      ["2", 2],
      ["1000", 2],
    ] as const) {
      const res = await call("GET", `${adapterPath(model, user)}/versions?limit=${limit}`, {
        token: auth,
      });
      expect(((await res.json()) as { versions: unknown[] }).versions).toHaveLength(n);
    }
  });

  it("the OpenAPI document describes version and limit as canonical integer strings", async () => {
    const doc = (await (await call("GET", "/v1/openapi.json")).json()) as {
      paths: Record<
        string,
        Record<string, { parameters?: { name: string; schema: { pattern?: string } }[] }>
      >;
    };
    const path = doc.paths["/v1/models/{model}/users/{user}/adapter/versions/{version}"];
    const version = path?.get?.parameters?.find((p) => p.name === "version");
    expect(version?.schema.pattern).toBe("^[1-9][0-9]*$");
    const list = doc.paths["/v1/models/{model}/users/{user}/adapter/versions"];
    expect(list?.get?.parameters?.find((p) => p.name === "limit")?.schema.pattern).toBe(
      "^[1-9][0-9]*$",
    );
  });
});
