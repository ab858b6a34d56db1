// The API calls the client library does not cover: version history and training jobs.

/** An API failure with the answer's status, error code and message. */
export class EdgeError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "EdgeError";
    this.status = status;
    this.code = code;
  }
}

export interface AdapterVersion {
  version: number;
  etag: string;
  bytes: number;
  created: string;
  source: string;
}

export interface Job {
  id: string;
  status: "queued" | "running" | "succeeded" | "failed";
  attempts: number;
  created: string;
  updated: string;
  error: string | null;
  version: number | null;
}

const segment = encodeURIComponent;

async function call<T>(path: string, token: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${token}`);
  const response = await fetch(path, { ...init, headers });
  if (!response.ok) {
    let code = `http_${response.status}`;
    let message = response.statusText;
    try {
      const body = (await response.json()) as { error?: { code?: string; message?: string } };
      code = body.error?.code ?? code;
      message = body.error?.message ?? message;
    } catch {}
    throw new EdgeError(response.status, code, message);
  }
  return (await response.json()) as T;
}

const adapterPath = (model: string, user: string) =>
  `/v1/models/${segment(model)}/users/${segment(user)}/adapter`;

/** Newest first; empty when the user has no adapter yet. */
export async function listVersions(
  model: string,
  user: string,
  token: string,
): Promise<AdapterVersion[]> {
  try {
    const { versions } = await call<{ versions: AdapterVersion[] }>(
      `${adapterPath(model, user)}/versions`,
      token,
    );
    return versions;
  } catch (error) {
    if (error instanceof EdgeError && error.status === 404) return [];
    throw error;
  }
}

/** Queues a training job on `texts` for `user`. */
export async function createJob(
  model: string,
  user: string,
  token: string,
  texts: string[],
  options: { steps?: number },
): Promise<Job> {
  const { job } = await call<{ job: Job }>(
    `/v1/models/${segment(model)}/users/${segment(user)}/jobs`,
    token,
    {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ data: { kind: "text", texts }, options }),
    },
  );
  return job;
}

export async function getJob(id: string, token: string): Promise<Job> {
  const { job } = await call<{ job: Job }>(`/v1/jobs/${segment(id)}`, token);
  return job;
}
