import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  adapter,
  adapterPath,
  call,
  callWithRawBody,
  createJob,
  errorOf,
  jobsPath,
  OTHER_FACTORS,
  publishModel,
  sha256,
  token,
  uid,
} from "./helpers.ts";

type Job = {
  id: string;
  model: string;
  user: string;
  status: string;
  attempts: number;
  lease_expires: string | null;
  error: string | null;
  version: number | null;
  options: Record<string, unknown>;
};
type Claimed = { jobs: { job: Job; lease_id: string }[] };

const textData = { kind: "text", texts: ["hello there", "general kenobi"] };

async function setup(family: "decoder" | "encoder" = "decoder") {
  const model = await publishModel(family === "decoder" ? "job-llama" : "job-bert", family);
  const user = uid("u");
  const worker = await token(uid("gpu"), "worker");
  return { model, user, worker, userToken: await token(user) };
}

/** The job most tests create: a little text and a few training options. */
const training = { data: textData, options: { steps: 10, lr: 0.002, batch_size: 2 } };

async function claim(worker: string, model: string, extra: Record<string, unknown> = {}) {
  const res = await call("POST", "/v1/jobs/claim", {
    token: worker,
    json: { models: [model], ...extra },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Claimed;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("create and status", () => {
  it("creates a queued job, stores its data in R2, shows it to its user, workers and admins", async () => {
    const { model, user, userToken } = await setup();
    const res = await createJob(model, user, training);
    expect(res.status).toBe(201);
    const { job } = (await res.json()) as { job: Job };
    expect(job).toMatchObject({
      model,
      user,
      status: "queued",
      attempts: 0,
      lease_expires: null,
      version: null,
    });
    expect(job.options).toEqual({ steps: 10, lr: 0.002, batch_size: 2 });
    const data = await env.BUCKET.get(`jobs/${job.id}/data.json`);
    expect(JSON.parse((await data?.text()) ?? "null")).toEqual(textData);

    for (const t of [userToken, await token("gpu", "worker"), await token("ops", "admin")]) {
      const get = await call("GET", `/v1/jobs/${job.id}`, { token: t });
      expect(get.status).toBe(200);
      expect(((await get.json()) as { job: Job }).job.id).toBe(job.id);
    }
  });

  it("rejects bad JSON (400), a wrong content type (415), bad shapes (422), oversized data (413)", async () => {
    const { model, user, userToken } = await setup();
    const path = jobsPath(model, user);
    const badJson = await callWithRawBody("POST", path, userToken, "{not json");
    expect(badJson.status).toBe(400);
    expect((await errorOf(badJson)).code).toBe("request.bad_json");

    const text = await callWithRawBody("POST", path, userToken, "{}", "text/plain");
    expect(text.status).toBe(415);

    const shapes: unknown[] = [
      {},
      { data: { kind: "text", texts: [] } },
      { data: { kind: "text", texts: [1, 2] } },
      { data: { kind: "images", texts: ["x"] } },
      { data: textData, options: { steps: -1 } },
      { data: textData, options: { lr: "fast" } },
      { data: textData, options: { epochs: 3 } },
      { data: textData, options: { batch_size: 0 } },
      { data: textData, options: { batch_size: 1000 } },
      { data: textData, extra: true },
      [],
    ];
    for (const body of shapes) {
      const res = await call("POST", path, { token: userToken, json: body });
      expect(res.status, JSON.stringify(body)).toBe(422);
      const error = await errorOf(res);
      expect(error.code).toBe("request.invalid");
      expect(error.message).toContain("body failed validation");
    }

    const huge = { data: { kind: "text", texts: ["x".repeat(9 * 1024 * 1024)] } };
    const big = await call("POST", path, { token: userToken, json: huge });
    expect(big.status).toBe(413);
    expect((await errorOf(big)).message).toContain(String(8 * 1024 * 1024));
  });

  it("rejects data of the wrong kind for the model family and unknown models", async () => {
    const dec = await setup("decoder");
    const labels = { data: { kind: "labels", examples: [{ text: "win money", label: "spam" }] } };
    const res = await createJob(dec.model, dec.user, labels);
    expect(res.status).toBe(422);
    expect((await errorOf(res)).code).toBe("job.data_kind_mismatch");

    const enc = await setup("encoder");
    expect((await createJob(enc.model, enc.user, labels)).status).toBe(201);

    const unknown = await createJob("no-such-model", dec.user, training);
    expect(unknown.status).toBe(404);
    expect((await errorOf(unknown)).code).toBe("model.not_found");
  });

  it("unknown and malformed job ids", async () => {
    const t = await token("ops", "admin");
    const worker = await token("gpu", "worker");
    const ghost = crypto.randomUUID();
    for (const [method, path, init] of [
      ["POST", `/v1/jobs/${ghost}/heartbeat`, { json: { lease_id: "x" } }],
      ["POST", `/v1/jobs/${ghost}/fail`, { json: { lease_id: "x", reason: "r" } }],
      ["GET", `/v1/jobs/${ghost}/data`, { headers: { "x-lease-id": "x" } }],
      [
        "POST",
        `/v1/jobs/${ghost}/complete`,
        { body: adapter("m"), headers: { "x-lease-id": "x" } },
      ],
    ] as const) {
      const res = await call(method, path, { token: worker, ...init });
      expect(res.status, path).toBe(404);
      expect((await errorOf(res)).code).toBe("job.not_found");
    }
    const missing = await call("GET", `/v1/jobs/${crypto.randomUUID()}`, { token: t });
    expect(missing.status).toBe(404);
    expect((await errorOf(missing)).code).toBe("job.not_found");
    const bad = await call("GET", "/v1/jobs/not-a-uuid", { token: t });
    expect(bad.status).toBe(400);
  });
});

describe("claim, heartbeat, data, complete", () => {
  it("claims the oldest job with a lease; nothing left is an empty list", async () => {
    const { model, user, worker } = await setup();
    const first = ((await (await createJob(model, user, training)).json()) as { job: Job }).job;
    const second = ((await (await createJob(model, user, training)).json()) as { job: Job }).job;
    const a = await claim(worker, model);
    expect(a.jobs).toHaveLength(1);
    expect(a.jobs[0]?.job).toMatchObject({ id: first.id, status: "running", attempts: 1 });
    expect(Date.parse(a.jobs[0]?.job.lease_expires ?? "")).toBeGreaterThan(Date.now() + 200_000);
    const b = await claim(worker, model, { max: 5 });
    expect(b.jobs.map((j) => j.job.id)).toEqual([second.id]);
    expect((await claim(worker, model)).jobs).toEqual([]);
  });

  it("two concurrent claims never get the same job", async () => {
    const { model, user, worker } = await setup();
    for (let i = 0; i < 3; i++) await createJob(model, user, training);
    const results = await Promise.all([0, 1, 2, 3].map(() => claim(worker, model)));
    const ids = results.flatMap((r) => r.jobs.map((j) => j.job.id));
    expect(ids).toHaveLength(3);
    expect(new Set(ids).size).toBe(3);
  });

  it("claim validates its body and is for workers only", async () => {
    const { model, worker, userToken } = await setup();
    const asUser = await call("POST", "/v1/jobs/claim", {
      token: userToken,
      json: { models: [model] },
    });
    expect(asUser.status).toBe(403);
    for (const body of [
      { max: 0 },
      { lease_seconds: 0 },
      { lease_seconds: 99999 },
      { models: ["Bad Id"] },
      { max: "1" },
    ]) {
      const res = await call("POST", "/v1/jobs/claim", { token: worker, json: body });
      expect(res.status, JSON.stringify(body)).toBe(422);
    }
    const empty = await call("POST", "/v1/jobs/claim", {
      token: worker,
      json: { models: [model] },
    });
    expect(empty.status).toBe(200);
    expect(await empty.json()).toEqual({ jobs: [] }); // nothing queued for this fresh model
  });

  it("heartbeat extends the lease; data needs the lease; complete stores a worker version idempotently", async () => {
    const { model, user, worker, userToken } = await setup();
    const { job } = (await (await createJob(model, user, training)).json()) as { job: Job };
    const [{ lease_id } = { lease_id: "" }] = (await claim(worker, model, { lease_seconds: 30 }))
      .jobs;
    const before = Date.now();

    const hb = await call("POST", `/v1/jobs/${job.id}/heartbeat`, {
      token: worker,
      json: { lease_id, lease_seconds: 600 },
    });
    expect(hb.status).toBe(200);
    const extended = ((await hb.json()) as { job: Job }).job;
    expect(Date.parse(extended.lease_expires ?? "")).toBeGreaterThan(before + 500_000);

    const noLease = await call("GET", `/v1/jobs/${job.id}/data`, { token: worker });
    expect(noLease.status).toBe(400);
    const wrongLease = await call("GET", `/v1/jobs/${job.id}/data`, {
      token: worker,
      headers: { "x-lease-id": "nope" },
    });
    expect(wrongLease.status).toBe(409);
    const data = await call("GET", `/v1/jobs/${job.id}/data`, {
      token: worker,
      headers: { "x-lease-id": lease_id },
    });
    expect(data.status).toBe(200);
    expect(await data.json()).toEqual(textData);

    const bytes = adapter(model, { fill: 0.05 });
    const done = await call("POST", `/v1/jobs/${job.id}/complete`, {
      token: worker,
      body: bytes,
      headers: { "x-lease-id": lease_id, "content-type": "application/octet-stream" },
    });
    expect(done.status).toBe(200);
    const answer = (await done.json()) as { job: Job; version: number; etag: string };
    expect(answer).toMatchObject({ version: 1, etag: await sha256(bytes) });
    expect(answer.job).toMatchObject({ status: "succeeded", version: 1 });

    // The same call again answers the same.
    const again = await call("POST", `/v1/jobs/${job.id}/complete`, {
      token: worker,
      body: bytes,
      headers: { "x-lease-id": lease_id, "content-type": "application/octet-stream" },
    });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(answer);
    // Other bytes under the same lease are a conflict, and no second version appeared.
    const other = await call("POST", `/v1/jobs/${job.id}/complete`, {
      token: worker,
      body: adapter(model, { fill: 0.9 }),
      headers: { "x-lease-id": lease_id },
    });
    expect(other.status).toBe(409);
    expect((await errorOf(other)).code).toBe("job.already_completed");

    const list = await call("GET", `${adapterPath(model, user)}/versions`, { token: userToken });
    const { versions } = (await list.json()) as { versions: { source: string }[] };
    expect(versions.map((v) => v.source)).toEqual(["worker"]);
    const current = await call("GET", adapterPath(model, user), { token: userToken });
    expect(new Uint8Array(await current.arrayBuffer())).toEqual(bytes);

    // Training data is gone once the job ended; the lease no longer reads anything.
    await sleep(50);
    expect(await env.BUCKET.get(`jobs/${job.id}/data.json`)).toBeNull();
    const after = await call("GET", `/v1/jobs/${job.id}/data`, {
      token: worker,
      headers: { "x-lease-id": lease_id },
    });
    expect(after.status).toBe(409);
    const hbAfter = await call("POST", `/v1/jobs/${job.id}/heartbeat`, {
      token: worker,
      json: { lease_id },
    });
    expect(hbAfter.status).toBe(409);
  });

  it("complete validates the adapter like PUT", async () => {
    const { model, user, worker } = await setup();
    const { job } = (await (await createJob(model, user, training)).json()) as { job: Job };
    const [{ lease_id } = { lease_id: "" }] = (await claim(worker, model)).jobs;
    const bad = await call("POST", `/v1/jobs/${job.id}/complete`, {
      token: worker,
      body: adapter(model, { factors: OTHER_FACTORS }),
      headers: { "x-lease-id": lease_id },
    });
    expect(bad.status).toBe(422);
    expect((await errorOf(bad)).code).toBe("adapter.factors_mismatch");
    const status = await call("GET", `/v1/jobs/${job.id}`, { token: worker });
    expect(((await status.json()) as { job: Job }).job.status).toBe("running");
    const big = await call("POST", `/v1/jobs/${job.id}/complete`, {
      token: worker,
      body: new Uint8Array(4 * 1024 * 1024 + 10),
      headers: { "x-lease-id": lease_id },
    });
    expect(big.status).toBe(413);
  });
});

describe("leases and failures", () => {
  it("an expired lease puts the job back: re-claim increments attempts, the old lease gets 409", async () => {
    const { model, user, worker } = await setup();
    const { job } = (await (await createJob(model, user, training)).json()) as { job: Job };
    const first = (await claim(worker, model, { lease_seconds: 1 })).jobs[0];
    expect(first?.job.attempts).toBe(1);
    expect((await claim(worker, model)).jobs).toEqual([]);
    await sleep(1100);
    const second = (await claim(worker, model, { lease_seconds: 60 })).jobs[0];
    expect(second?.job).toMatchObject({ id: job.id, attempts: 2, status: "running" });
    expect(second?.lease_id).not.toBe(first?.lease_id);

    const old = first?.lease_id ?? "";
    const hb = await call("POST", `/v1/jobs/${job.id}/heartbeat`, {
      token: worker,
      json: { lease_id: old },
    });
    expect(hb.status).toBe(409);
    expect((await errorOf(hb)).code).toBe("job.lease_lost");
    const stale = await call("POST", `/v1/jobs/${job.id}/complete`, {
      token: worker,
      body: adapter(model),
      headers: { "x-lease-id": old },
    });
    expect(stale.status).toBe(409);
    expect((await errorOf(stale)).code).toBe("job.lease_lost");
    const failStale = await call("POST", `/v1/jobs/${job.id}/fail`, {
      token: worker,
      json: { lease_id: old, reason: "x" },
    });
    expect(failStale.status).toBe(409);
  });

  it("fail with retry requeues until attempts run out, then fails and drops the data", async () => {
    const { model, user, worker } = await setup();
    const { job } = (await (await createJob(model, user, training)).json()) as { job: Job };
    for (let attempt = 1; attempt <= 3; attempt++) {
      const claimed = (await claim(worker, model)).jobs[0];
      expect(claimed?.job.attempts).toBe(attempt);
      const res = await call("POST", `/v1/jobs/${job.id}/fail`, {
        token: worker,
        json: { lease_id: claimed?.lease_id, reason: `out of memory ${attempt}`, retry: true },
      });
      expect(res.status).toBe(200);
      const after = ((await res.json()) as { job: Job }).job;
      expect(after.status).toBe(attempt < 3 ? "queued" : "failed");
      expect(after.error).toBe(`out of memory ${attempt}`);
    }
    expect((await claim(worker, model)).jobs).toEqual([]);
    expect(await env.BUCKET.get(`jobs/${job.id}/data.json`)).toBeNull();
  });

  it("fail without retry ends the job at once; bad fail bodies are 422", async () => {
    const { model, user, worker } = await setup();
    const { job } = (await (await createJob(model, user, training)).json()) as { job: Job };
    const claimed = (await claim(worker, model)).jobs[0];
    const bad = await call("POST", `/v1/jobs/${job.id}/fail`, {
      token: worker,
      json: { lease_id: claimed?.lease_id },
    });
    expect(bad.status).toBe(422);
    const res = await call("POST", `/v1/jobs/${job.id}/fail`, {
      token: worker,
      json: { lease_id: claimed?.lease_id, reason: "bad data" },
    });
    expect(((await res.json()) as { job: Job }).job).toMatchObject({
      status: "failed",
      error: "bad data",
    });
    expect(await env.BUCKET.get(`jobs/${job.id}/data.json`)).toBeNull();
  });

  it("a lease that expires on the last attempt fails the job", async () => {
    const { model, user, worker } = await setup();
    const { job } = (await (await createJob(model, user, training)).json()) as { job: Job };
    for (let i = 0; i < 3; i++) {
      expect((await claim(worker, model, { lease_seconds: 1 })).jobs).toHaveLength(1);
      await sleep(1050);
    }
    expect((await claim(worker, model)).jobs).toEqual([]);
    const status = (
      (await (await call("GET", `/v1/jobs/${job.id}`, { token: worker })).json()) as { job: Job }
    ).job;
    expect(status.status).toBe("failed");
    expect(status.error).toContain("lease expired on attempt 3 of 3");
  });
});
