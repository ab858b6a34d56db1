/** Every SQL statement of the edge API: small typed query functions over D1 with ?N binds. */

export type AdapterHead = { version: number; etag: string };

export type VersionRow = {
  version: number;
  etag: string;
  bytes: number;
  created: string;
  source: string;
};

export type JobStatus = "queued" | "running" | "succeeded" | "failed";

export type JobRow = {
  id: string;
  model: string;
  user: string;
  status: JobStatus;
  attempts: number;
  max_attempts: number;
  created: string;
  updated: string;
  lease_id: string | null;
  lease_owner: string | null;
  lease_expires: number | null;
  error: string | null;
  version: number | null;
  result_etag: string | null;
  options: string;
  data_key: string | null;
};

// ---- adapters -------------------------------------------------------------------------------

export function getHead(db: D1Database, model: string, user: string) {
  return db
    .prepare("SELECT version, etag FROM adapter_heads WHERE model = ?1 AND user = ?2")
    .bind(model, user)
    .first<AdapterHead>();
}

/**
 * What a commit may require of the current head: nothing, that one exists (`If-Match: *`), or
 * that its etag is one of `etags`.
 */
export type HeadCondition =
  | { kind: "none" }
  | { kind: "exists" }
  | { kind: "etag"; etags: string[] };

/**
 * Stores the next version of one user's adapter and moves the head to it, in one D1 batch (a
 * transaction: D1 runs one at a time per database). The version number is allocated inside the
 * INSERT as the user's counter + 1 (`adapter_counters`, which DELETE keeps), so concurrent
 * writers queue in D1 instead of racing for a number: every writer gets its own, in commit
 * order, and no number is ever handed out twice for one user, also across a DELETE. Returns the
 * version, or null when the head condition did not hold (nothing was written).
 */
export async function commitNextVersion(
  db: D1Database,
  model: string,
  user: string,
  row: Omit<VersionRow, "version">,
  condition: HeadCondition,
): Promise<number | null> {
  const head = "SELECT 1 FROM adapter_heads WHERE model = ?1 AND user = ?2";
  const etags = condition.kind === "etag" ? condition.etags : [];
  const where =
    condition.kind === "none"
      ? "1"
      : condition.kind === "exists"
        ? `EXISTS (${head})`
        : `EXISTS (${head} AND etag IN (SELECT value FROM json_each(?7)))`;
  const [inserted] = await db.batch<{ version: number }>([
    db
      .prepare(
        `INSERT INTO adapter_versions (model, user, version, etag, bytes, created, source)
         SELECT ?1, ?2, MAX(
             COALESCE((SELECT last FROM adapter_counters WHERE model = ?1 AND user = ?2), 0),
             COALESCE((SELECT MAX(version) FROM adapter_versions WHERE model = ?1 AND user = ?2), 0)
           ) + 1,
           ?3, ?4, ?5, ?6
         WHERE ${where}
         RETURNING version`,
      )
      .bind(
        model,
        user,
        row.etag,
        row.bytes,
        row.created,
        row.source,
        ...(condition.kind === "etag" ? [JSON.stringify(etags)] : []),
      ),
    // The counter follows the newest version row; unchanged when nothing was inserted.
    db
      .prepare(
        `INSERT INTO adapter_counters (model, user, last)
         SELECT model, user, MAX(version) FROM adapter_versions WHERE model = ?1 AND user = ?2
         GROUP BY model, user
         ON CONFLICT (model, user) DO UPDATE SET last = excluded.last WHERE excluded.last > adapter_counters.last`,
      )
      .bind(model, user),
    // The head is always the newest version row; unchanged when nothing was inserted.
    db
      .prepare(
        `INSERT INTO adapter_heads (model, user, version, etag, updated)
         SELECT model, user, version, etag, created FROM adapter_versions
         WHERE model = ?1 AND user = ?2 ORDER BY version DESC LIMIT 1
         ON CONFLICT (model, user) DO UPDATE SET version = excluded.version, etag = excluded.etag, updated = excluded.updated
         WHERE adapter_heads.version <> excluded.version`,
      )
      .bind(model, user),
  ]);
  return inserted?.results[0]?.version ?? null;
}

export async function listVersions(db: D1Database, model: string, user: string, limit: number) {
  const { results } = await db
    .prepare(
      "SELECT version, etag, bytes, created, source FROM adapter_versions WHERE model = ?1 AND user = ?2 ORDER BY version DESC LIMIT ?3",
    )
    .bind(model, user, limit)
    .all<VersionRow>();
  return results;
}

export function getVersion(db: D1Database, model: string, user: string, version: number) {
  return db
    .prepare(
      "SELECT version, etag, bytes, created, source FROM adapter_versions WHERE model = ?1 AND user = ?2 AND version = ?3",
    )
    .bind(model, user, version)
    .first<VersionRow>();
}

/**
 * Removes every version row and the head of one user's adapter for one model and returns the
 * numbers of the rows it removed. The counter stays, so these numbers are never handed out again.
 */
export async function deleteAdapter(db: D1Database, model: string, user: string) {
  const [deleted] = await db.batch<{ version: number }>([
    db
      .prepare("DELETE FROM adapter_versions WHERE model = ?1 AND user = ?2 RETURNING version")
      .bind(model, user),
    db.prepare("DELETE FROM adapter_heads WHERE model = ?1 AND user = ?2").bind(model, user),
  ]);
  return (deleted?.results ?? []).map((row) => row.version);
}

// ---- rate limit -----------------------------------------------------------------------------

/** Counts one write of `subject` in `window` and returns the count so far (exact: D1 serialises writes). */
export async function countWrite(db: D1Database, subject: string, window: number) {
  const row = await db
    .prepare(
      `INSERT INTO rate_windows (subject, window, count) VALUES (?1, ?2, 1)
       ON CONFLICT (subject, window) DO UPDATE SET count = count + 1 RETURNING count`,
    )
    .bind(subject, window)
    .first<{ count: number }>();
  return row?.count ?? 1;
}

export function pruneRateWindows(db: D1Database, before: number) {
  return db.prepare("DELETE FROM rate_windows WHERE window < ?1").bind(before).run();
}

// ---- jobs -----------------------------------------------------------------------------------

export async function insertJob(db: D1Database, job: JobRow) {
  await db
    .prepare(
      `INSERT INTO jobs (id, model, user, status, attempts, max_attempts, created, updated, options, data_key)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)`,
    )
    .bind(
      job.id,
      job.model,
      job.user,
      job.status,
      job.attempts,
      job.max_attempts,
      job.created,
      job.updated,
      job.options,
      job.data_key,
    )
    .run();
}

export function getJob(db: D1Database, id: string) {
  return db.prepare("SELECT * FROM jobs WHERE id = ?1").bind(id).first<JobRow>();
}

/**
 * Fails running jobs whose lease expired on their last attempt, so claim never hands them out again.
 * Returns them (their training data is then deleted).
 */
export async function failExhaustedLeases(db: D1Database, now: number, updated: string) {
  const { results } = await db
    .prepare(
      `UPDATE jobs SET status = 'failed', error = 'lease expired on attempt ' || attempts || ' of ' || max_attempts,
         lease_id = NULL, lease_expires = NULL, updated = ?2
       WHERE status = 'running' AND lease_expires < ?1 AND attempts >= max_attempts RETURNING *`,
    )
    .bind(now, updated)
    .all<JobRow>();
  return results;
}

/**
 * Atomically claims the oldest queued job, or a running one whose lease expired, for `models`
 * (all when empty). One statement: the subquery and the guard run under D1's single writer.
 */
export function claimOne(
  db: D1Database,
  models: readonly string[],
  lease: { id: string; owner: string; expires: number },
  now: number,
  updated: string,
) {
  const claimable = "(status = 'queued' OR (status = 'running' AND lease_expires < ?1))";
  const modelFilter = models.length
    ? ` AND model IN (${models.map((_, i) => `?${i + 6}`).join(", ")})`
    : "";
  return db
    .prepare(
      `UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_id = ?2, lease_owner = ?3,
         lease_expires = ?4, updated = ?5
       WHERE id = (SELECT id FROM jobs WHERE ${claimable}${modelFilter} ORDER BY rowid LIMIT 1)
         AND ${claimable}
       RETURNING *`,
    )
    .bind(now, lease.id, lease.owner, lease.expires, updated, ...models)
    .first<JobRow>();
}

/** Extends a live lease; null when the lease is no longer held (expired, re-claimed, ended). */
export function extendLease(
  db: D1Database,
  id: string,
  leaseId: string,
  expires: number,
  now: number,
  updated: string,
) {
  return db
    .prepare(
      `UPDATE jobs SET lease_expires = ?3, updated = ?5
       WHERE id = ?1 AND lease_id = ?2 AND status = 'running' AND lease_expires >= ?4 RETURNING *`,
    )
    .bind(id, leaseId, expires, now, updated)
    .first<JobRow>();
}

/** Marks a leased job succeeded with the etag of its result; null when the lease is not held. */
export function markSucceeded(
  db: D1Database,
  id: string,
  leaseId: string,
  etag: string,
  now: number,
  updated: string,
) {
  return db
    .prepare(
      `UPDATE jobs SET status = 'succeeded', result_etag = ?3, lease_expires = NULL, error = NULL, updated = ?5
       WHERE id = ?1 AND lease_id = ?2 AND status = 'running' AND lease_expires >= ?4 RETURNING *`,
    )
    .bind(id, leaseId, etag, now, updated)
    .first<JobRow>();
}

export function setJobVersion(db: D1Database, id: string, version: number) {
  return db
    .prepare("UPDATE jobs SET version = ?2, data_key = NULL WHERE id = ?1 RETURNING *")
    .bind(id, version)
    .first<JobRow>();
}

/** Puts a job whose result could not be stored back under its lease. */
export function revertSucceeded(db: D1Database, id: string, leaseExpires: number) {
  return db
    .prepare(
      "UPDATE jobs SET status = 'running', result_etag = NULL, lease_expires = ?2 WHERE id = ?1 AND status = 'succeeded' AND version IS NULL",
    )
    .bind(id, leaseExpires)
    .run();
}

/**
 * Ends a leased attempt with a failure: back to the queue when `retry` and attempts remain,
 * else failed. Null when the lease is not held.
 */
export function failLeased(
  db: D1Database,
  id: string,
  leaseId: string,
  reason: string,
  retry: boolean,
  updated: string,
) {
  return db
    .prepare(
      `UPDATE jobs SET status = CASE WHEN ?4 AND attempts < max_attempts THEN 'queued' ELSE 'failed' END,
         error = ?3, lease_id = NULL, lease_owner = NULL, lease_expires = NULL, updated = ?5
       WHERE id = ?1 AND lease_id = ?2 AND status = 'running' RETURNING *`,
    )
    .bind(id, leaseId, reason, retry ? 1 : 0, updated)
    .first<JobRow>();
}

export function clearJobData(db: D1Database, id: string) {
  return db.prepare("UPDATE jobs SET data_key = NULL WHERE id = ?1").bind(id).run();
}
