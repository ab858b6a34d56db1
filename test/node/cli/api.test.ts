import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../../src/cli/errors.ts";
import { sha256Hex } from "../../../src/format/index.ts";
import { type DevApi, freePort, startDevApi } from "./dev-api.ts";
import { cli, makeModel, randomR, type TestModel, writeAdapter } from "./fixtures.ts";

const SECRET = "cli-test-secret-not-for-production";
let api: DevApi;
let model: TestModel;
let first: string;
let second: string;
let env: Record<string, string>;

async function token(sub: string, role = "user"): Promise<string> {
  const r = await cli(["token", "--sub", sub, "--role", role, "--secret", SECRET]);
  expect(r.code, r.stderr).toBe(EXIT.ok);
  return r.stdout.trim();
}

const target = () => ["--api", api.url, "--model", model.id, "--user", "alice"];

beforeAll(async () => {
  model = await makeModel({ id: "cli-test" });
  first = await writeAdapter(model, "first.safetensors", randomR(model, 1), "F16");
  second = await writeAdapter(model, "second.safetensors", randomR(model, 2), "F16");
  api = await startDevApi(SECRET);
  // Publish the model's manifest as an admin, so the API can validate adapters against it.
  const admin = await token("ops", "admin");
  const manifest = await readFile(model.manifestPath, "utf8");
  const published = await fetch(`${api.url}/v1/models/${model.id}/manifest`, {
    method: "PUT",
    headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
    body: manifest,
  });
  expect(published.status, await published.clone().text()).toBe(201);
  env = { LORAXS_TOKEN: await token("alice") };
}, 180_000);

afterAll(async () => {
  await api?.stop();
});

describe("loraxs against the real local edge API", () => {
  it("push → pull → versions → restore → rm, with ETags checked", async () => {
    const p1 = await cli(["push", first, ...target(), "--json"], env);
    expect(p1.code, p1.stderr).toBe(EXIT.ok);
    const v1 = JSON.parse(p1.stdout);
    const firstBytes = new Uint8Array(await readFile(first));
    expect(v1.etag).toBe(await sha256Hex(firstBytes));

    // --if-match with the current ETag succeeds; the user defaults to the token's sub.
    const p2 = await cli(["push", second, "--api", api.url, "--if-match", v1.etag, "--json"], env);
    expect(p2.code, p2.stderr).toBe(EXIT.ok);
    const v2 = JSON.parse(p2.stdout);
    expect(v2.version).not.toBe(v1.version);

    const out = join(model.dir, "pulled.safetensors");
    const pulled = await cli(["pull", ...target(), "--out", out], env);
    expect(pulled.code, pulled.stderr).toBe(EXIT.ok);
    expect(Buffer.compare(await readFile(out), await readFile(second))).toBe(0);
    expect(pulled.stdout).toContain(`etag ${v2.etag}`);

    const same = await cli(["pull", ...target(), "--out", out, "--if-none-match", v2.etag], env);
    expect(same.code).toBe(EXIT.ok);
    expect(same.stdout).toContain("not modified");

    const listed = await cli(["versions", ...target(), "--json"], env);
    expect(listed.code, listed.stderr).toBe(EXIT.ok);
    const versions = JSON.parse(listed.stdout).versions;
    expect(versions.map((v: { etag: string }) => v.etag)).toEqual([v2.etag, v1.etag]);
    const table = await cli(["versions", ...target()], env);
    expect(table.stdout.split("\n")[0]).toMatch(/^version\s+created\s+bytes\s+source\s+etag$/);

    const old = join(model.dir, "v1.safetensors");
    const byVersion = await cli(
      ["pull", ...target(), "--out", old, "--version", String(v1.version)],
      env,
    );
    expect(byVersion.code, byVersion.stderr).toBe(EXIT.ok);
    expect(Buffer.compare(await readFile(old), await readFile(first))).toBe(0);

    const restored = await cli(["restore", String(v1.version), ...target(), "--json"], env);
    expect(restored.code, restored.stderr).toBe(EXIT.ok);
    expect(JSON.parse(restored.stdout).etag).toBe(v1.etag);
    await cli(["pull", ...target(), "--out", out], env);
    expect(Buffer.compare(await readFile(out), await readFile(first))).toBe(0);

    const unconfirmed = await cli(["rm", ...target()], env);
    expect(unconfirmed.code).toBe(EXIT.usage);
    expect(unconfirmed.stderr).toContain("--yes");
    const removed = await cli(["rm", ...target(), "--yes"], env);
    expect(removed.code, removed.stderr).toBe(EXIT.ok);
    const gone = await cli(["pull", ...target(), "--out", out], env);
    expect(gone.code).toBe(EXIT.notFound);
    expect(gone.stderr).toContain("→ 404");
  });

  it("412 on a stale --if-match exits 5 and says to pull again", async () => {
    const p1 = await cli(["push", first, ...target(), "--json"], env);
    expect(p1.code, p1.stderr).toBe(EXIT.ok);
    expect((await cli(["push", second, ...target()], env)).code).toBe(EXIT.ok);
    const stale = await cli(
      ["push", first, ...target(), "--if-match", JSON.parse(p1.stdout).etag],
      env,
    );
    expect(stale.code).toBe(EXIT.conflict);
    expect(stale.stderr).toContain("→ 412");
    expect(stale.stderr).toContain("loraxs pull");
  });

  it("401 without a token or with a token signed by another secret exits 4", async () => {
    const none = await cli(["push", first, ...target()], {});
    expect(none.code).toBe(EXIT.auth);
    expect(none.stderr).toContain("→ 401");
    expect(none.stderr).toContain("LORAXS_TOKEN");
    const forged = (
      await cli(["token", "--sub", "alice", "--secret", "some-other-secret"])
    ).stdout.trim();
    const bad = await cli(
      ["pull", ...target(), "--out", join(model.dir, "x"), "--token", forged],
      {},
    );
    expect(bad.code).toBe(EXIT.auth);
    expect(bad.stderr).toContain("→ 401");
    expect(bad.stderr).toContain("loraxs token");
  });

  it("403 when one user's token touches another user's adapter exits 4", async () => {
    const bob = await token("bob");
    const r = await cli(["push", first, ...target(), "--token", bob], {});
    expect(r.code).toBe(EXIT.auth);
    expect(r.stderr).toContain("→ 403");
    expect(r.stderr).toContain('may not act on user "alice"');
  });

  it("validates before sending: an adapter for another model never leaves the machine (exit 1)", async () => {
    const r = await cli(
      ["push", first, "--api", api.url, "--model", "some-other-model", "--user", "alice"],
      env,
    );
    expect(r.code).toBe(EXIT.invalid);
    expect(r.stderr).toContain('an adapter for model "cli-test"; --model is "some-other-model"');
  });

  it("an unreachable API (a closed port on 127.0.0.1) exits 3 and names the URL", async () => {
    const port = await freePort();
    const r = await cli(
      ["versions", "--api", `http://127.0.0.1:${port}`, "--model", model.id, "--user", "alice"],
      env,
    );
    expect(r.code).toBe(EXIT.network);
    expect(r.stderr).toContain(
      `cannot reach the API at http://127.0.0.1:${port}/v1/models/cli-test/users/alice/adapter/versions: ECONNREFUSED`,
    );
  });
});
