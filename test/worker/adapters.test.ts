import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { deleteAllVersions, storeVersion } from "../../src/api/adapter-store.ts";
import type { Bindings } from "../../src/api/env.ts";
import { encodeAdapter } from "../../src/format/index.ts";
import {
  adapter,
  adapterPath,
  call,
  decoderModelForTests,
  errorOf,
  FACTORS,
  MODULES,
  OTHER_FACTORS,
  putAdapter,
  RANK,
  sha256,
  token,
  uid,
  userWithVersions,
} from "./helpers.ts";

const model = decoderModelForTests("tiny-llama");

/** An F32 adapter whose first R value is then overwritten with NaN, byte by byte. */
function nanAdapter() {
  const bytes = encodeAdapter(
    {
      model,
      factors: FACTORS,
      rank: RANK,
      modules: MODULES,
      R: new Float32Array(MODULES * RANK * RANK).fill(0.5),
    },
    { dtype: "F32" },
  );
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const headerLength = Number(view.getBigUint64(0, true));
  view.setFloat32(8 + headerLength, Number.NaN, true);
  return new Uint8Array(bytes);
}

/**
 * The stores of one user's adapter agree: every version D1 lists serves the bytes uploaded as
 * that version (`told`: number → etag as answered), R2 holds exactly the listed versions and the
 * current adapter is the newest of them.
 */
async function expectStoresAgree(user: string, told: Map<number, string>) {
  const admin = await token("ops", "admin");
  const path = adapterPath(model, user);
  const list = await call("GET", `${path}/versions`, { token: admin });
  const { versions } = (await list.json()) as { versions: { version: number; etag: string }[] };
  for (const v of versions) {
    expect(told.get(v.version)).toBe(v.etag);
    const res = await call("GET", `${path}/versions/${v.version}`, { token: admin });
    expect(`v${v.version}: ${res.status}`).toBe(`v${v.version}: 200`);
    expect(await sha256(new Uint8Array(await res.arrayBuffer()))).toBe(v.etag);
  }
  const objects = (await env.BUCKET.list({ prefix: `adapters/${model}/${user}/` })).objects;
  expect(objects.map((o) => o.key).sort()).toEqual(
    versions.map((v) => `adapters/${model}/${user}/${v.version}.safetensors`).sort(),
  );
  const current = await call("GET", path, { token: admin });
  const newest = versions[0];
  if (!newest) {
    expect(current.status).toBe(404);
    await current.body?.cancel();
  } else {
    expect(current.status).toBe(200);
    expect(current.headers.get("x-adapter-version")).toBe(String(newest.version));
    expect(await sha256(new Uint8Array(await current.arrayBuffer()))).toBe(newest.etag);
  }
}

/**
 * The test bindings, with `interject` run to completion before the storage call number `step`
 * (D1 statement or batch, KV or R2 call) made through them.
 */
function pauseAt(step: number, interject: () => Promise<unknown>) {
  let calls = 0;
  let fired = false;
  const gate = async () => {
    if (calls++ !== step) return;
    fired = true;
    await interject();
  };
  const io = new Set(["batch", "first", "all", "run", "raw", "get", "getWithMetadata", "put"]);
  for (const name of ["delete", "list", "head"]) io.add(name);
  const gated = <T extends object>(target: T): T =>
    new Proxy(target, {
      get(t, key) {
        const value = Reflect.get(t, key, t);
        if (typeof value !== "function") return value;
        if (key === "prepare") {
          return (sql: string) => {
            const statement = (value as (sql: string) => D1PreparedStatement).call(t, sql);
            const bind = statement.bind;
            statement.bind = (...args: unknown[]) => gated(bind.apply(statement, args));
            return gated(statement);
          };
        }
        if (typeof key === "string" && io.has(key)) {
          return async (...args: unknown[]) => {
            await gate();
            return (value as (...a: unknown[]) => unknown).apply(t, args);
          };
        }
        return (value as (...a: unknown[]) => unknown).bind(t);
      },
    });
  const bindings = { ...env, DB: gated(env.DB), KV: gated(env.KV), BUCKET: gated(env.BUCKET) };
  return { env: bindings as unknown as Bindings, fired: () => fired };
}

describe("PUT then GET adapter", () => {
  it("stores version 1 and serves the same bytes with a sha256 ETag from KV", async () => {
    const user = uid("u");
    const bytes = adapter(model, { fill: 0.25 });
    const put = await putAdapter(model, user, bytes);
    expect(put.status).toBe(201);
    const body = (await put.json()) as { version: number; etag: string; bytes: number };
    const hex = await sha256(bytes);
    expect(body).toEqual({ version: 1, etag: hex, bytes: bytes.byteLength });
    expect(put.headers.get("etag")).toBe(`"${hex}"`);

    const get = await call("GET", adapterPath(model, user), { token: await token(user) });
    expect(get.status).toBe(200);
    expect(get.headers.get("etag")).toBe(`"${hex}"`);
    expect(get.headers.get("x-adapter-version")).toBe("1");
    expect(get.headers.get("content-type")).toBe("application/octet-stream");
    expect(new Uint8Array(await get.arrayBuffer())).toEqual(bytes);

    // The hot copy is one KV value with its metadata; R2 and D1 hold the version.
    const kv = await env.KV.getWithMetadata<{ etag: string; version: number }>(
      `adapter/${model}/${user}`,
      "arrayBuffer",
    );
    expect(kv.metadata).toMatchObject({ etag: hex, version: 1 });
    const r2 = await env.BUCKET.get(`adapters/${model}/${user}/1.safetensors`);
    expect(new Uint8Array((await r2?.arrayBuffer()) ?? new ArrayBuffer(0))).toEqual(bytes);
  });

  it("answers 304 on a matching If-None-Match and 200 otherwise", async () => {
    const user = uid("u");
    const bytes = adapter(model);
    await putAdapter(model, user, bytes);
    const etag = `"${await sha256(bytes)}"`;
    const auth = await token(user);
    const hit = await call("GET", adapterPath(model, user), {
      token: auth,
      headers: { "if-none-match": etag },
    });
    expect(hit.status).toBe(304);
    expect(hit.headers.get("etag")).toBe(etag);
    expect((await hit.arrayBuffer()).byteLength).toBe(0);
    const miss = await call("GET", adapterPath(model, user), {
      token: auth,
      headers: { "if-none-match": `"${"0".repeat(64)}"` },
    });
    expect(miss.status).toBe(200);
  });

  it("workers and admins read a user's adapter; 404 when there is none", async () => {
    const user = uid("u");
    await putAdapter(model, user, adapter(model));
    for (const role of ["worker", "admin"] as const) {
      const res = await call("GET", adapterPath(model, user), {
        token: await token(`${role}-1`, role),
      });
      expect(res.status).toBe(200);
    }
    const none = uid("u");
    const res = await call("GET", adapterPath(model, none), { token: await token(none) });
    expect(res.status).toBe(404);
    expect((await errorOf(res)).code).toBe("adapter.not_found");
  });

  it("a worker's upload is recorded with source worker", async () => {
    const user = uid("u");
    const res = await putAdapter(model, user, adapter(model), {}, await token("gpu-1", "worker"));
    expect(res.status).toBe(201);
    const list = await call("GET", `${adapterPath(model, user)}/versions`, {
      token: await token(user),
    });
    const { versions } = (await list.json()) as { versions: { source: string }[] };
    expect(versions.map((v) => v.source)).toEqual(["worker"]);
  });
});

describe("PUT adapter rejects bad input with the format's code", () => {
  const cases: [string, () => Uint8Array<ArrayBuffer>, number, string][] = [
    [
      "foreign factor digest",
      () => adapter(model, { factors: OTHER_FACTORS }),
      422,
      "adapter.factors_mismatch",
    ],
    ["wrong rank", () => adapter(model, { rank: RANK * 2 }), 422, "adapter.rank_mismatch"],
    [
      "wrong module count",
      () => adapter(model, { modules: MODULES + 1 }),
      422,
      "adapter.modules_mismatch",
    ],
    ["another model's adapter", () => adapter("other-model"), 422, "adapter.model_mismatch"],
    ["NaN in R", nanAdapter, 422, "adapter.value_not_finite"],
    [
      "garbage bytes",
      () => new Uint8Array(new TextEncoder().encode("definitely not safetensors")),
      422,
      "",
    ],
    ["empty body", () => new Uint8Array(0), 422, ""],
  ];
  for (const [name, make, status, code] of cases) {
    it(name, async () => {
      const user = uid("u");
      const res = await putAdapter(model, user, make());
      expect(res.status).toBe(status);
      const error = await errorOf(res);
      if (code) expect(error.code).toBe(code);
      else expect(error.code).toMatch(/^adapter\./);
      expect(error.message.length).toBeGreaterThan(10);
      // Nothing was stored.
      const get = await call("GET", adapterPath(model, user), { token: await token(user) });
      expect(get.status).toBe(404);
    });
  }

  it("an oversized body is 413 with the limit in the message", async () => {
    const user = uid("u");
    const res = await putAdapter(model, user, new Uint8Array(4 * 1024 * 1024 + 1));
    expect(res.status).toBe(413);
    const error = await errorOf(res);
    expect(error.code).toBe("request.too_large");
    expect(error.message).toContain(String(4 * 1024 * 1024));
  });

  it("an unknown model is 404 model.not_found", async () => {
    const user = uid("u");
    const res = await putAdapter("no-such-model", user, adapter("no-such-model"));
    expect(res.status).toBe(404);
    expect((await errorOf(res)).code).toBe("model.not_found");
  });

  it("a malformed model or user path segment is 400", async () => {
    const auth = await token("alice");
    const res = await call("PUT", "/v1/models/Bad%20Model/users/alice/adapter", {
      token: auth,
      body: adapter(model),
    });
    expect(res.status).toBe(400);
    expect((await errorOf(res)).code).toBe("request.bad_param");
  });
});

describe("If-Match and concurrency", () => {
  it("If-Match on the current etag writes; a stale one is 412", async () => {
    const user = uid("u");
    const first = adapter(model, { fill: 0.1 });
    await putAdapter(model, user, first);
    const etag1 = `"${await sha256(first)}"`;
    const second = adapter(model, { fill: 0.2 });
    const ok = await putAdapter(model, user, second, { "if-match": etag1 });
    expect(ok.status).toBe(201);
    expect(((await ok.json()) as { version: number }).version).toBe(2);
    const stale = await putAdapter(model, user, adapter(model, { fill: 0.3 }), {
      "if-match": etag1,
    });
    expect(stale.status).toBe(412);
    const error = await errorOf(stale);
    expect(error.code).toBe("adapter.precondition_failed");
    expect(error.message).toContain(await sha256(second));
  });

  it("If-Match on a user with no adapter is 412", async () => {
    const user = uid("u");
    const res = await putAdapter(model, user, adapter(model), {
      "if-match": `"${"1".repeat(64)}"`,
    });
    expect(res.status).toBe(412);
  });

  it("two concurrent PUTs with the same If-Match: exactly one 201, one 412", async () => {
    const user = uid("u");
    const base = adapter(model, { fill: 0.1 });
    await putAdapter(model, user, base);
    const ifMatch = { "if-match": `"${await sha256(base)}"` };
    const [a, b] = await Promise.all([
      putAdapter(model, user, adapter(model, { fill: 0.7 }), ifMatch),
      putAdapter(model, user, adapter(model, { fill: 0.8 }), ifMatch),
    ]);
    expect([a.status, b.status].sort()).toEqual([201, 412]);
    const winner = a.status === 201 ? a : b;
    const { etag } = (await winner.json()) as { etag: string };
    // KV, D1 and the GET all agree on the winner.
    const get = await call("GET", adapterPath(model, user), { token: await token(user) });
    expect(get.headers.get("etag")).toBe(`"${etag}"`);
    const list = await call("GET", `${adapterPath(model, user)}/versions`, {
      token: await token(user),
    });
    const { versions } = (await list.json()) as { versions: { version: number; etag: string }[] };
    expect(versions.map((v) => v.version)).toEqual([2, 1]);
    expect(versions[0]?.etag).toBe(etag);
  });

  it("concurrent PUTs without If-Match all land in the history, KV ends on the newest", async () => {
    const user = uid("u");
    const uploads = [0.1, 0.2, 0.3, 0.4].map((fill) => adapter(model, { fill }));
    const results = await Promise.all(uploads.map((b) => putAdapter(model, user, b)));
    expect(results.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    const list = await call("GET", `${adapterPath(model, user)}/versions`, {
      token: await token(user),
    });
    const { versions } = (await list.json()) as { versions: { version: number; etag: string }[] };
    expect(versions.map((v) => v.version)).toEqual([4, 3, 2, 1]);
    const hashes = await Promise.all(uploads.map(sha256));
    expect(new Set(versions.map((v) => v.etag))).toEqual(new Set(hashes));
    const get = await call("GET", adapterPath(model, user), { token: await token(user) });
    expect(get.headers.get("x-adapter-version")).toBe("4");
    expect(get.headers.get("etag")).toBe(`"${versions[0]?.etag}"`);
  });
});

describe("versions", () => {
  it("lists newest first, serves one version, restores it as a new version", async () => {
    const user = uid("u");
    const auth = await token(user);
    const v1 = adapter(model, { fill: 0.11 });
    const v2 = adapter(model, { fill: 0.22 });
    await putAdapter(model, user, v1);
    await putAdapter(model, user, v2);

    const list = await call("GET", `${adapterPath(model, user)}/versions`, { token: auth });
    expect(list.status).toBe(200);
    const { versions } = (await list.json()) as { versions: Record<string, unknown>[] };
    expect(versions).toHaveLength(2);
    expect(versions[0]).toMatchObject({
      version: 2,
      etag: await sha256(v2),
      bytes: v2.byteLength,
      source: "client",
    });
    expect(typeof versions[0]?.created).toBe("string");

    const one = await call("GET", `${adapterPath(model, user)}/versions/1`, { token: auth });
    expect(one.status).toBe(200);
    expect(one.headers.get("etag")).toBe(`"${await sha256(v1)}"`);
    expect(new Uint8Array(await one.arrayBuffer())).toEqual(v1);

    const restore = await call("POST", `${adapterPath(model, user)}/versions/1/restore`, {
      token: auth,
    });
    expect(restore.status).toBe(201);
    expect(await restore.json()).toEqual({
      version: 3,
      etag: await sha256(v1),
      bytes: v1.byteLength,
    });
    const current = await call("GET", adapterPath(model, user), { token: auth });
    expect(new Uint8Array(await current.arrayBuffer())).toEqual(v1);
    expect(current.headers.get("x-adapter-version")).toBe("3");

    const limited = await call("GET", `${adapterPath(model, user)}/versions?limit=1`, {
      token: auth,
    });
    expect(((await limited.json()) as { versions: unknown[] }).versions).toHaveLength(1);
  });

  it("unknown and malformed versions", async () => {
    const { user, auth } = await userWithVersions(model, 0.1);
    const missing = await call("GET", `${adapterPath(model, user)}/versions/9`, { token: auth });
    expect(missing.status).toBe(404);
    expect((await errorOf(missing)).code).toBe("adapter.version_not_found");
    const restoreMissing = await call("POST", `${adapterPath(model, user)}/versions/9/restore`, {
      token: auth,
    });
    expect(restoreMissing.status).toBe(404);
    for (const bad of ["0", "-1", "abc", "1.5"]) {
      const res = await call("GET", `${adapterPath(model, user)}/versions/${bad}`, { token: auth });
      expect(res.status).toBe(400);
      expect((await errorOf(res)).code).toBe("request.bad_param");
    }
    const badLimit = await call("GET", `${adapterPath(model, user)}/versions?limit=100000`, {
      token: auth,
    });
    expect(badLimit.status).toBe(400);
    expect((await errorOf(badLimit)).code).toBe("request.bad_query");
  });

  it("a restore with a stale If-Match is 412", async () => {
    const { user, auth } = await userWithVersions(model, 0.1, 0.2);
    const res = await call("POST", `${adapterPath(model, user)}/versions/1/restore`, {
      token: auth,
      headers: { "if-match": `"${await sha256(adapter(model, { fill: 0.1 }))}"` },
    });
    expect(res.status).toBe(412);
  });
});

describe("DELETE", () => {
  it("leaves nothing readable: GET 404, versions empty, R2 and KV gone", async () => {
    const { user, auth } = await userWithVersions(model, 0.1, 0.2);
    const del = await call("DELETE", adapterPath(model, user), { token: auth });
    expect(del.status).toBe(204);

    expect((await call("GET", adapterPath(model, user), { token: auth })).status).toBe(404);
    const list = await call("GET", `${adapterPath(model, user)}/versions`, { token: auth });
    expect(await list.json()).toEqual({ versions: [] });
    for (const v of [1, 2]) {
      expect(
        (await call("GET", `${adapterPath(model, user)}/versions/${v}`, { token: auth })).status,
      ).toBe(404);
    }
    const objects = await env.BUCKET.list({ prefix: `adapters/${model}/${user}/` });
    expect(objects.objects).toEqual([]);
    expect(await env.KV.get(`adapter/${model}/${user}`)).toBeNull();
    const rows = await env.DB.prepare(
      "SELECT count(*) AS n FROM adapter_versions WHERE model = ?1 AND user = ?2",
    )
      .bind(model, user)
      .first<{ n: number }>();
    expect(rows?.n).toBe(0);

    // A later upload starts a fresh history whose numbering continues: no version number (and
    // so no R2 key) ever names two different adapters.
    const again = await putAdapter(model, user, adapter(model));
    expect(((await again.json()) as { version: number }).version).toBe(3);
    const fresh = await call("GET", `${adapterPath(model, user)}/versions`, { token: auth });
    expect(
      ((await fresh.json()) as { versions: { version: number }[] }).versions.map((v) => v.version),
    ).toEqual([3]);
    for (const v of [1, 2]) {
      expect(
        (await call("GET", `${adapterPath(model, user)}/versions/${v}`, { token: auth })).status,
      ).toBe(404);
    }
  });

  it("a PUT racing a DELETE leaves KV, D1 and R2 agreeing", async () => {
    for (let i = 0; i < 4; i++) {
      const { user, auth } = await userWithVersions(model, 0.1);
      await Promise.all([
        putAdapter(model, user, adapter(model, { fill: 0.2 })),
        call("DELETE", adapterPath(model, user), { token: auth }),
      ]);
      const list = await call("GET", `${adapterPath(model, user)}/versions`, { token: auth });
      const { versions } = (await list.json()) as { versions: { version: number; etag: string }[] };
      const objects = (await env.BUCKET.list({ prefix: `adapters/${model}/${user}/` })).objects;
      const kv = await env.KV.getWithMetadata<{ etag: string }>(`adapter/${model}/${user}`);
      expect(objects.map((o) => o.key).sort()).toEqual(
        versions.map((v) => `adapters/${model}/${user}/${v.version}.safetensors`).sort(),
      );
      expect(kv.metadata?.etag ?? null).toBe(versions[0]?.etag ?? null);
    }
  });

  it("PUTs interleaved with DELETEs: every listed version keeps its bytes, KV on the newest", async () => {
    const worker = await token("gpu-1", "worker");
    const admin = await token("ops", "admin");
    for (let round = 0; round < 8; round++) {
      const user = uid("u");
      const uploads = Array.from({ length: 12 }, (_, i) =>
        adapter(model, { fill: (round * 100 + i + 1) / 10_000 }),
      );
      const told = new Map<number, string>();
      const put = async (bytes: Uint8Array<ArrayBuffer>) => {
        const res = await putAdapter(model, user, bytes, {}, worker);
        expect(res.status).toBe(201);
        const body = (await res.json()) as { version: number; etag: string };
        // A version number is never handed out twice for one user, DELETE or not.
        expect(told.has(body.version)).toBe(false);
        told.set(body.version, body.etag);
      };
      for (const bytes of uploads.slice(0, 2)) await put(bytes);
      await Promise.all(
        uploads
          .slice(2)
          .flatMap((bytes, i) => [
            put(bytes),
            ...(i % 3 === 0 ? [call("DELETE", adapterPath(model, user), { token: admin })] : []),
          ]),
      );
      await expectStoresAgree(user, told);
    }
  }, 120_000);

  it("a PUT run to the end at each step of a DELETE, and a DELETE at each step of a PUT", async () => {
    // Every storage call of one operation is a point where the other runs in full.
    for (const paused of ["delete", "put"] as const) {
      for (let step = 0; ; step++) {
        const user = uid("u");
        const told = new Map<number, string>();
        const put = async (on: Bindings, fill: number) => {
          const bytes = adapter(model, { fill });
          const stored = await storeVersion(on, model, user, bytes, "client");
          expect(told.has(stored.version)).toBe(false);
          told.set(stored.version, stored.etag);
        };
        await put(env, 0.01);
        await put(env, 0.02);
        const fresh = 0.03 + step / 1000;
        const gated = pauseAt(step, () =>
          paused === "delete" ? put(env, fresh) : deleteAllVersions(env, model, user),
        );
        if (paused === "delete") await deleteAllVersions(gated.env, model, user);
        else await put(gated.env, fresh);
        await expectStoresAgree(user, told);
        if (!gated.fired()) break;
      }
    }
  }, 120_000);

  it("an admin may delete a user's adapter; deleting nothing is still 204", async () => {
    const user = uid("u");
    await putAdapter(model, user, adapter(model));
    const del = await call("DELETE", adapterPath(model, user), {
      token: await token("ops", "admin"),
    });
    expect(del.status).toBe(204);
    expect((await call("GET", adapterPath(model, user), { token: await token(user) })).status).toBe(
      404,
    );
    const none = await call("DELETE", adapterPath(model, uid("u")), {
      token: await token("ops", "admin"),
    });
    expect(none.status).toBe(204);
  });
});
