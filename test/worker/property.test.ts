// Random sequences of PUT / DELETE / restore / GET from several users and tokens, run against the
// worker in workerd; after every step the invariants are checked against a model of each user's
// history and against every user's adapter as stored.
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import {
  adapter,
  adapterPath,
  call,
  decoderManifest,
  publish,
  putAdapter,
  sha256,
  token,
  uid,
} from "./helpers.ts";

const model = uid("prop");
beforeAll(() => publish(decoderManifest(model)));

const USERS = 3;
const STALE = `"${"e".repeat(64)}"`;

type Actor = "self" | "other" | "worker" | "admin";
type Action =
  | { op: "put"; user: number; actor: Actor; fill: number; ifMatch: "none" | "current" | "stale" }
  | { op: "delete"; user: number; actor: Actor }
  | { op: "restore"; user: number; actor: Actor; pick: number }
  | { op: "get"; user: number; actor: Actor }
  | { op: "version"; user: number; actor: Actor; pick: number };

const user = fc.integer({ min: 0, max: USERS - 1 });
const actor = fc.constantFrom<Actor>("self", "self", "self", "other", "worker", "admin");
const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("put" as const),
      user,
      actor,
      fill: fc.integer({ min: 1, max: 8 }),
      ifMatch: fc.constantFrom(
        "none" as const,
        "none" as const,
        "current" as const,
        "stale" as const,
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("delete" as const), user, actor }) },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant("restore" as const), user, actor, pick: fc.nat(6) }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("get" as const), user, actor }) },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant("version" as const), user, actor, pick: fc.nat(6) }),
  },
);

/** Who may do what (docs/api.md): the expected status of an action on the model. */
function allowed(a: Action): boolean {
  if (a.actor === "other") return false;
  switch (a.op) {
    case "put":
      return a.actor === "self" || a.actor === "worker";
    case "delete":
      return a.actor === "self" || a.actor === "admin";
    case "restore":
      return a.actor === "self";
    case "get":
      return true;
    case "version":
      return a.actor === "self" || a.actor === "admin";
  }
}

async function run(actions: Action[]) {
  const users = Array.from({ length: USERS }, () => uid("p"));
  const tokens = await Promise.all(users.map((u) => token(u)));
  const worker = await token("gpu-1", "worker");
  const admin = await token("ops", "admin");
  // The model: each user's history, oldest first, as etags (version = index + 1).
  const history: string[][] = users.map(() => []);
  const tokenOf = (a: Action) =>
    a.actor === "self"
      ? tokens[a.user]
      : a.actor === "other"
        ? tokens[(a.user + 1) % USERS]
        : a.actor === "worker"
          ? worker
          : admin;

  for (const [step, a] of actions.entries()) {
    const at = `step ${step} ${JSON.stringify(a)}`;
    const path = adapterPath(model, users[a.user] as string);
    const mine = history[a.user] as string[];
    const auth = tokenOf(a) as string;
    let res: Response;
    let expected: number;
    if (a.op === "put") {
      const bytes = adapter(model, { fill: a.fill / 64 });
      const current = mine.at(-1);
      const ifMatch: Record<string, string> =
        a.ifMatch === "none"
          ? {}
          : { "if-match": a.ifMatch === "stale" ? STALE : current ? `"${current}"` : "*" };
      res = await putAdapter(model, users[a.user] as string, bytes, ifMatch, auth);
      const matches = a.ifMatch === "none" || (a.ifMatch === "current" && current !== undefined);
      expected = !allowed(a) ? 403 : matches ? 201 : 412;
      if (res.status === 201) {
        const body = (await res.json()) as { version: number; etag: string };
        expect(body, at).toEqual({
          version: mine.length + 1,
          etag: await sha256(bytes),
          bytes: bytes.byteLength,
        });
        mine.push(body.etag);
      }
    } else if (a.op === "delete") {
      res = await call("DELETE", path, { token: auth });
      expected = allowed(a) ? 204 : 403;
      if (res.status === 204) mine.length = 0;
    } else if (a.op === "restore") {
      const version = a.pick + 1;
      res = await call("POST", `${path}/versions/${version}/restore`, { token: auth });
      expected = !allowed(a) ? 403 : version <= mine.length ? 201 : 404;
      if (res.status === 201) {
        const body = (await res.json()) as { version: number; etag: string };
        expect(body.version, at).toBe(mine.length + 1);
        expect(body.etag, at).toBe(mine[version - 1]);
        mine.push(body.etag);
      }
    } else if (a.op === "get") {
      res = await call("GET", path, { token: auth });
      expected = !allowed(a) ? 403 : mine.length ? 200 : 404;
      if (res.status === 200) {
        expect(res.headers.get("etag"), at).toBe(`"${mine.at(-1)}"`);
        expect(await sha256(new Uint8Array(await res.arrayBuffer())), at).toBe(mine.at(-1));
      }
    } else {
      const version = a.pick + 1;
      res = await call("GET", `${path}/versions/${version}`, { token: auth });
      expected = !allowed(a) ? 403 : version <= mine.length ? 200 : 404;
      if (res.status === 200) {
        expect(await sha256(new Uint8Array(await res.arrayBuffer())), at).toBe(mine[version - 1]);
      }
    }
    expect(res.status, at).toBeLessThan(500);
    expect(res.status, at).toBe(expected);
    if (!res.bodyUsed) await res.body?.cancel();
    await checkInvariants(users, tokens, history, at);
  }
}

async function checkInvariants(users: string[], tokens: string[], history: string[][], at: string) {
  for (const [i, u] of users.entries()) {
    const own = tokens[i] as string;
    const other = tokens[(i + 1) % USERS] as string;
    const path = adapterPath(model, u);
    const expected = history[i] as string[];
    // Version numbers are gap-free and increasing: n, n-1, ..., 1 newest first, as the model says.
    const list = await call("GET", `${path}/versions?limit=1000`, { token: own });
    expect(list.status, at).toBe(200);
    const { versions } = (await list.json()) as { versions: { version: number; etag: string }[] };
    expect(
      versions.map((v) => v.version),
      at,
    ).toEqual(expected.map((_, k) => expected.length - k));
    expect(
      versions.map((v) => v.etag),
      at,
    ).toEqual([...expected].reverse());
    // The current adapter is the newest version's bytes.
    const current = await call("GET", path, { token: own });
    if (!expected.length) {
      expect(current.status, at).toBe(404);
      await current.body?.cancel();
    } else {
      expect(current.status, at).toBe(200);
      expect(current.headers.get("x-adapter-version"), at).toBe(String(expected.length));
      const newest = await call("GET", `${path}/versions/${expected.length}`, { token: own });
      expect(newest.status, at).toBe(200);
      const bytes = new Uint8Array(await current.arrayBuffer());
      expect(bytes, at).toEqual(new Uint8Array(await newest.arrayBuffer()));
      expect(await sha256(bytes), at).toBe(expected.at(-1));
    }
    // A user reads only their own adapter: another user's token is refused on every read.
    for (const p of [path, `${path}/versions`, `${path}/versions/1`]) {
      const res = await call("GET", p, { token: other });
      expect(res.status, `${at}: other user on ${p}`).toBe(403);
      await res.body?.cancel();
    }
  }
}

describe("random sequences of adapter operations", () => {
  it("keep every invariant after every step", async () => {
    await fc.assert(fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 14 }), run), {
      numRuns: 50,
    });
  }, 300_000);
});
