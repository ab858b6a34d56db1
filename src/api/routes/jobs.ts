import { createRoute } from "@hono/zod-openapi";
import type { Context } from "hono";
import { sha256Hex } from "../../format/index.ts";
import { r2JobData } from "../../shared/keys.ts";
import {
  DEFAULT_LEASE_SECONDS,
  MAX_ADAPTER_BYTES,
  MAX_CONTROL_BODY_BYTES,
  MAX_JOB_ATTEMPTS,
  MAX_JOB_BODY_BYTES,
} from "../../shared/limits.ts";
import { storeVersion, validateAdapter } from "../adapter-store.ts";
import { guard, identityOf } from "../auth.ts";
import { readBytes } from "../body.ts";
import * as db from "../db.ts";
import type { AppEnv } from "../env.ts";
import { conflict, forbidden, notFound, unprocessable } from "../errors.ts";
import { dropJobData, toJob } from "../jobs.ts";
import { requireManifest } from "../manifests.ts";
import { jsonBody } from "../middleware.ts";
import { bearer, errors, router } from "../openapi.ts";
import { limited } from "../rate-limit.ts";
import {
  Binary,
  ClaimAnswer,
  ClaimBody,
  CompleteAnswer,
  CreateJobBody,
  FailBody,
  HeartbeatBody,
  JobAnswer,
  JobParams,
  LeaseHeader,
  UserParams,
} from "../schemas.ts";

const json = <T>(schema: T) => ({ "application/json": { schema } });

const createJob = createRoute({
  method: "post",
  path: "/v1/models/{model}/users/{user}/jobs",
  tags: ["jobs"],
  summary: "Queue a training job with its data",
  security: bearer,
  middleware: [guard(["user"], "owner"), limited, jsonBody(MAX_JOB_BODY_BYTES, "job")] as const,
  request: { params: UserParams, body: { content: json(CreateJobBody), required: true } },
  responses: {
    201: { description: "Queued", content: json(JobAnswer) },
    ...errors(400, 401, 403, 404, 413, 415, 422, 429),
  },
});

const getJobRoute = createRoute({
  method: "get",
  path: "/v1/jobs/{id}",
  tags: ["jobs"],
  summary: "A job's status",
  security: bearer,
  middleware: [guard(["user", "worker", "admin"])] as const,
  request: { params: JobParams },
  responses: {
    200: { description: "The job", content: json(JobAnswer) },
    ...errors(400, 401, 403, 404),
  },
});

const claim = createRoute({
  method: "post",
  path: "/v1/jobs/claim",
  tags: ["jobs"],
  summary: "Claim the oldest queued jobs (or ones whose lease expired) with a lease",
  security: bearer,
  middleware: [guard(["worker"]), jsonBody(MAX_CONTROL_BODY_BYTES, "claim")] as const,
  request: { body: { content: json(ClaimBody), required: false } },
  responses: {
    200: { description: "Claimed jobs (empty when none)", content: json(ClaimAnswer) },
    ...errors(400, 401, 403, 413, 415, 422),
  },
});

const heartbeat = createRoute({
  method: "post",
  path: "/v1/jobs/{id}/heartbeat",
  tags: ["jobs"],
  summary: "Extend the lease",
  security: bearer,
  middleware: [guard(["worker"]), jsonBody(MAX_CONTROL_BODY_BYTES, "heartbeat")] as const,
  request: { params: JobParams, body: { content: json(HeartbeatBody), required: true } },
  responses: {
    200: { description: "The job with its new lease_expires", content: json(JobAnswer) },
    ...errors(400, 401, 403, 404, 409, 413, 415, 422),
  },
});

const jobData = createRoute({
  method: "get",
  path: "/v1/jobs/{id}/data",
  tags: ["jobs"],
  summary: "The job's training data (lease holder only)",
  security: bearer,
  middleware: [guard(["worker"])] as const,
  request: { params: JobParams, headers: LeaseHeader },
  responses: {
    200: { description: "Training data JSON", content: json(CreateJobBody.shape.data) },
    ...errors(400, 401, 403, 404, 409),
  },
});

const complete = createRoute({
  method: "post",
  path: "/v1/jobs/{id}/complete",
  tags: ["jobs"],
  summary: "Complete with the trained adapter (idempotent for the same lease and bytes)",
  security: bearer,
  middleware: [guard(["worker"])] as const,
  request: {
    params: JobParams,
    headers: LeaseHeader,
    body: { content: { "application/octet-stream": { schema: Binary } }, required: true },
  },
  responses: {
    200: { description: "Stored as a new version", content: json(CompleteAnswer) },
    ...errors(400, 401, 403, 404, 409, 413, 422),
  },
});

const fail = createRoute({
  method: "post",
  path: "/v1/jobs/{id}/fail",
  tags: ["jobs"],
  summary: "Fail the attempt; retry puts it back in the queue while attempts remain",
  security: bearer,
  middleware: [guard(["worker"]), jsonBody(MAX_CONTROL_BODY_BYTES, "fail")] as const,
  request: { params: JobParams, body: { content: json(FailBody), required: true } },
  responses: {
    200: { description: "The job", content: json(JobAnswer) },
    ...errors(400, 401, 403, 404, 409, 413, 415, 422),
  },
});

const stamp = () => {
  const now = Date.now();
  return { now, iso: new Date(now).toISOString() };
};

async function loadJob(c: Context<AppEnv>, id: string) {
  const row = await db.getJob(c.env.DB, id);
  if (!row) throw notFound("job.not_found", `no job ${JSON.stringify(id)}`);
  return row;
}

const leaseLost = (row: db.JobRow, leaseId: string) =>
  conflict(
    "job.lease_lost",
    `lease ${JSON.stringify(leaseId)} no longer holds job ${row.id} (status ${row.status}${
      row.lease_expires !== null
        ? `, lease expires ${new Date(row.lease_expires).toISOString()}`
        : ""
    })`,
  );

export const jobRoutes = router()
  .openapi(createJob, async (c) => {
    const { model, user } = c.req.valid("param");
    const body = c.req.valid("json");
    const { manifest } = await requireManifest(c.env, model);
    const expected = manifest.family === "encoder" ? "labels" : "text";
    if (body.data.kind !== expected) {
      throw unprocessable(
        "job.data_kind_mismatch",
        `data kind ${JSON.stringify(body.data.kind)} does not fit the ${manifest.family} model ${JSON.stringify(model)}; expected ${JSON.stringify(expected)}`,
      );
    }
    const id = crypto.randomUUID();
    const { iso } = stamp();
    const dataKey = r2JobData(id);
    await c.env.BUCKET.put(dataKey, JSON.stringify(body.data), {
      httpMetadata: { contentType: "application/json" },
    });
    const row: db.JobRow = {
      id,
      model,
      user,
      status: "queued",
      attempts: 0,
      max_attempts: MAX_JOB_ATTEMPTS,
      created: iso,
      updated: iso,
      lease_id: null,
      lease_owner: null,
      lease_expires: null,
      error: null,
      version: null,
      result_etag: null,
      options: JSON.stringify(body.options ?? {}),
      data_key: dataKey,
    };
    await db.insertJob(c.env.DB, row);
    return c.json({ job: toJob(row) }, 201);
  })
  .openapi(getJobRoute, async (c) => {
    const { id } = c.req.valid("param");
    const identity = identityOf(c);
    const row = await loadJob(c, id);
    if (identity.role === "user" && row.user !== identity.sub) {
      throw forbidden(
        "auth.forbidden_user",
        `token for user ${JSON.stringify(identity.sub)} may not read job ${id} of another user`,
      );
    }
    return c.json({ job: toJob(row) }, 200);
  })
  .openapi(claim, async (c) => {
    const identity = identityOf(c);
    const body = c.req.valid("json") ?? ClaimBody.parse({});
    const { now, iso } = stamp();
    const exhausted = await db.failExhaustedLeases(c.env.DB, now, iso);
    if (exhausted.length) c.executionCtx.waitUntil(endJobs(c, exhausted));
    const jobs: { job: ReturnType<typeof toJob>; lease_id: string }[] = [];
    const seconds = body.lease_seconds ?? DEFAULT_LEASE_SECONDS;
    for (let i = 0; i < body.max; i++) {
      const lease = { id: crypto.randomUUID(), owner: identity.sub, expires: now + seconds * 1000 };
      const row = await db.claimOne(c.env.DB, body.models ?? [], lease, now, iso);
      if (!row) break;
      jobs.push({ job: toJob(row), lease_id: lease.id });
    }
    return c.json({ jobs }, 200);
  })
  .openapi(heartbeat, async (c) => {
    const { id } = c.req.valid("param");
    const { lease_id, lease_seconds } = c.req.valid("json");
    const { now, iso } = stamp();
    const seconds = lease_seconds ?? DEFAULT_LEASE_SECONDS;
    const row = await db.extendLease(c.env.DB, id, lease_id, now + seconds * 1000, now, iso);
    if (!row) throw leaseLost(await loadJob(c, id), lease_id);
    return c.json({ job: toJob(row) }, 200);
  })
  .openapi(jobData, async (c) => {
    const { id } = c.req.valid("param");
    const leaseId = c.req.valid("header")["x-lease-id"];
    const row = await loadJob(c, id);
    const held =
      row.status === "running" &&
      row.lease_id === leaseId &&
      row.lease_expires !== null &&
      row.lease_expires >= Date.now();
    if (!held) throw leaseLost(row, leaseId);
    const object = row.data_key ? await c.env.BUCKET.get(row.data_key) : null;
    if (!object) throw notFound("job.data_gone", `training data of job ${id} is gone`);
    return new Response(object.body, {
      headers: { "content-type": "application/json", "cache-control": "no-store" },
    }) as never;
  })
  .openapi(complete, async (c) => {
    const { id } = c.req.valid("param");
    const leaseId = c.req.valid("header")["x-lease-id"];
    const bytes = await readBytes(c.req.raw, MAX_ADAPTER_BYTES, "adapter");
    const row = await loadJob(c, id);
    const etag = await sha256Hex(bytes);
    if (row.status === "succeeded") return c.json(repeatCompletion(row, leaseId, etag), 200);
    validateAdapter(bytes, await requireManifest(c.env, row.model));
    const { now, iso } = stamp();
    const marked = await db.markSucceeded(c.env.DB, id, leaseId, etag, now, iso);
    if (!marked) {
      const latest = await loadJob(c, id);
      if (latest.status === "succeeded")
        return c.json(repeatCompletion(latest, leaseId, etag), 200);
      throw leaseLost(latest, leaseId);
    }
    let stored: Awaited<ReturnType<typeof storeVersion>>;
    try {
      stored = await storeVersion(c.env, row.model, row.user, bytes, "worker");
    } catch (err) {
      await db.revertSucceeded(c.env.DB, id, row.lease_expires ?? now);
      throw err;
    }
    const done = (await db.setJobVersion(c.env.DB, id, stored.version)) ?? marked;
    c.executionCtx.waitUntil(dropJobData(c.env, [marked]));
    return c.json({ job: toJob(done), version: stored.version, etag: stored.etag }, 200);
  })
  .openapi(fail, async (c) => {
    const { id } = c.req.valid("param");
    const { lease_id, reason, retry } = c.req.valid("json");
    const row = await db.failLeased(c.env.DB, id, lease_id, reason, retry, stamp().iso);
    if (!row) throw leaseLost(await loadJob(c, id), lease_id);
    if (row.status === "failed") await endJobs(c, [row]);
    return c.json(
      { job: toJob({ ...row, data_key: row.status === "failed" ? null : row.data_key }) },
      200,
    );
  });

/** A completion repeated with the same lease and bytes answers as the first one did. */
function repeatCompletion(row: db.JobRow, leaseId: string, etag: string) {
  if (row.lease_id === leaseId && row.result_etag === etag && row.version === null) {
    throw conflict(
      "job.completing",
      `job ${row.id} is being completed with these bytes; ask again shortly`,
    );
  }
  if (row.lease_id !== leaseId || row.result_etag !== etag || row.version === null) {
    throw conflict(
      "job.already_completed",
      `job ${row.id} already succeeded${row.version !== null ? ` as version ${row.version}` : ""} with ${
        row.lease_id === leaseId ? "other adapter bytes" : "another lease"
      }`,
    );
  }
  return { job: toJob(row), version: row.version, etag };
}

async function endJobs(c: Context<AppEnv>, rows: db.JobRow[]) {
  await dropJobData(c.env, rows);
  for (const row of rows) await db.clearJobData(c.env.DB, row.id);
}
