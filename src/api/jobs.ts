import type { JobRow } from "./db.ts";
import type { Bindings } from "./env.ts";

/** A job as the API shows it (contract: docs/contracts.md). */
export function toJob(row: JobRow) {
  return {
    id: row.id,
    model: row.model,
    user: row.user,
    status: row.status,
    attempts: row.attempts,
    created: row.created,
    updated: row.updated,
    lease_expires: row.lease_expires === null ? null : new Date(row.lease_expires).toISOString(),
    error: row.error,
    version: row.version,
    options: JSON.parse(row.options) as Record<string, never>,
  };
}

/** Deletes a job's training data from R2 once the job has ended (succeeded or failed). */
export async function dropJobData(env: Bindings, rows: readonly JobRow[]) {
  const keys = rows.map((r) => r.data_key).filter((k): k is string => k !== null);
  if (keys.length) await env.BUCKET.delete(keys);
}
