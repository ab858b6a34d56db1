// Random sequences of PUT / DELETE / restore / GET from several users and tokens, run against the
// worker in workerd; after every step the invariants are checked against a model of each user's
// history and against every user's adapter as stored.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  adapter,
  adapterPath,
  call,
  decoderModelForTests,
  putAdapter,
  sha256,
  token,
  uid,
} from "./helpers.ts";

const model = decoderModelForTests("prop");

const USERS = 3;
const STALE = `"${"e".repeat(64)}"`;

type Entry = { version: number; etag: string };
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
  // The model: each user's history, oldest first, and the last version number handed out, which
  // a DELETE keeps (numbering continues after it).
  const history: Entry[][] = users.map(() => []);
  const last: number[] = users.map(() => 0);
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
    const mine = history[a.user] as Entry[];
    const next = (last[a.user] as number) + 1;
    // restore and version pick among the numbers handed out so far, newest first.
    const picked = Math.max(1, next - 1 - ("pick" in a ? a.pick : 0));
    const entry = mine.find((e) => e.version === picked);
    const auth = tokenOf(a) as string;
    let res: Response;
    let expected: number;
    if (a.op === "put") {
      const bytes = adapter(model, { fill: a.fill / 64 });
      const current = mine.at(-1)?.etag;
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
          version: next,
          etag: await sha256(bytes),
          bytes: bytes.byteLength,
        });
        mine.push({ version: body.version, etag: body.etag });
        last[a.user] = next;
      }
    } else if (a.op === "delete") {
      res = await call("DELETE", path, { token: auth });
      expected = allowed(a) ? 204 : 403;
      if (res.status === 204) mine.length = 0;
    } else if (a.op === "restore") {
      res = await call("POST", `${path}/versions/${picked}/restore`, { token: auth });
      expected = !allowed(a) ? 403 : entry ? 201 : 404;
      if (res.status === 201) {
        const body = (await res.json()) as { version: number; etag: string };
        expect(body.version, at).toBe(next);
        expect(body.etag, at).toBe(entry?.etag);
        mine.push({ version: body.version, etag: body.etag });
        last[a.user] = next;
      }
    } else if (a.op === "get") {
      res = await call("GET", path, { token: auth });
      expected = !allowed(a) ? 403 : mine.length ? 200 : 404;
      if (res.status === 200) {
        expect(res.headers.get("etag"), at).toBe(`"${mine.at(-1)?.etag}"`);
        expect(await sha256(new Uint8Array(await res.arrayBuffer())), at).toBe(mine.at(-1)?.etag);
      }
    } else {
      res = await call("GET", `${path}/versions/${picked}`, { token: auth });
      expected = !allowed(a) ? 403 : entry ? 200 : 404;
      if (res.status === 200) {
        expect(await sha256(new Uint8Array(await res.arrayBuffer())), at).toBe(entry?.etag);
      }
    }
    expect(res.status, at).toBeLessThan(500);
    expect(res.status, at).toBe(expected);
    if (!res.bodyUsed) await res.body?.cancel();
    await checkInvariants(users, tokens, history, at);
  }
}

async function checkInvariants(users: string[], tokens: string[], history: Entry[][], at: string) {
  for (const [i, u] of users.entries()) {
    const own = tokens[i] as string;
    const other = tokens[(i + 1) % USERS] as string;
    const path = adapterPath(model, u);
    const expected = history[i] as Entry[];
    // The history newest first, numbered as the model says (never reusing a number).
    const list = await call("GET", `${path}/versions?limit=1000`, { token: own });
    expect(list.status, at).toBe(200);
    const { versions } = (await list.json()) as { versions: Entry[] };
    expect(
      versions.map((v) => ({ version: v.version, etag: v.etag })),
      at,
    ).toEqual([...expected].reverse());
    // Every listed version's bytes are readable and are the bytes uploaded as that version.
    for (const v of versions) {
      const res = await call("GET", `${path}/versions/${v.version}`, { token: own });
      expect(res.status, `${at}: version ${v.version}`).toBe(200);
      expect(await sha256(new Uint8Array(await res.arrayBuffer())), at).toBe(v.etag);
    }
    // The current adapter is the newest version's bytes.
    const current = await call("GET", path, { token: own });
    if (!expected.length) {
      expect(current.status, at).toBe(404);
      await current.body?.cancel();
    } else {
      expect(current.status, at).toBe(200);
      const newest = expected.at(-1) as Entry;
      expect(current.headers.get("x-adapter-version"), at).toBe(String(newest.version));
      const stored = await call("GET", `${path}/versions/${newest.version}`, { token: own });
      expect(stored.status, at).toBe(200);
      const bytes = new Uint8Array(await current.arrayBuffer());
      expect(bytes, at).toEqual(new Uint8Array(await stored.arrayBuffer()));
      expect(await sha256(bytes), at).toBe(newest.etag);
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
    // Always tried first: numbering continues after a DELETE (the next version is 3, not 1).
    const afterDelete: Action[] = [
      { op: "put", user: 0, actor: "self", fill: 1, ifMatch: "none" },
      { op: "put", user: 0, actor: "self", fill: 2, ifMatch: "none" },
      { op: "delete", user: 0, actor: "self" },
      { op: "put", user: 0, actor: "worker", fill: 3, ifMatch: "none" },
      { op: "version", user: 0, actor: "self", pick: 0 },
    ];
    await fc.assert(fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 14 }), run), {
      numRuns: 50,
      examples: [[afterDelete]],
    });
  }, 300_000);
});
