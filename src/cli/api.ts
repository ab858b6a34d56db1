// HTTP calls to the edge API (docs/contracts.md, "API routes"), with every failure turned into
// a CliError whose exit code says which kind it was and whose hint says what to do.

import { CliError, EXIT, type ExitCode } from "./errors.ts";
import type { Io } from "./io.ts";

/** How long one request may take; adapters are kilobytes, so a slow answer means trouble. */
export const REQUEST_TIMEOUT_MS = 30_000;

/** Where a command talks to: base URL, model, user and bearer token. */
export interface ApiTarget {
  base: string;
  model: string;
  user: string;
  token: string | undefined;
}

/** `/v1/models/:model/users/:user/adapter` plus a suffix, with each segment encoded. */
export function adapterUrl(target: ApiTarget, suffix = ""): string {
  const base = target.base.replace(/\/+$/, "");
  return `${base}/v1/models/${encodeURIComponent(target.model)}/users/${encodeURIComponent(target.user)}/adapter${suffix}`;
}

export interface RequestOptions {
  method: "GET" | "PUT" | "POST" | "DELETE";
  body?: Uint8Array;
  headers?: Record<string, string>;
  /** Statuses that are not failures besides 2xx (e.g. 304 for a conditional GET). */
  accept?: number[];
}

/** Sends one request; returns the response for 2xx (and `accept`ed statuses), throws CliError otherwise. */
export async function callApi(
  io: Io,
  target: ApiTarget,
  url: string,
  options: RequestOptions,
): Promise<Response> {
  const headers: Record<string, string> = { ...options.headers };
  if (target.token) headers.authorization = `Bearer ${target.token}`;
  if (options.body) headers["content-type"] = "application/octet-stream";
  let response: Response;
  try {
    response = await io.fetch(url, {
      method: options.method,
      headers,
      body: options.body as Uint8Array<ArrayBuffer> | undefined,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    throw unreachable(url, error);
  }
  if (response.ok || options.accept?.includes(response.status)) return response;
  throw await apiFailure(options.method, url, response, target);
}

function unreachable(url: string, error: unknown): CliError {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const name = (error as Error).name;
  const why =
    name === "TimeoutError"
      ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`
      : (cause?.code ?? cause?.message ?? (error as Error).message);
  return new CliError(
    `cannot reach the API at ${url}: ${why}`,
    EXIT.network,
    "check --api (the local API runs with `npm run dev` on http://127.0.0.1:8787)",
  );
}

async function apiFailure(
  method: string,
  url: string,
  response: Response,
  target: ApiTarget,
): Promise<CliError> {
  const text = await response.text().catch(() => "");
  let code = "";
  let message = text.slice(0, 300);
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
    if (body.error) {
      code = body.error.code ?? "";
      message = body.error.message ?? message;
    }
  } catch {
    // Not JSON: keep the raw text.
  }
  const summary = `${method} ${url} → ${response.status}${code ? ` ${code}` : ""}: ${message || response.statusText}`;
  const [exit, hint] = classify(response.status, target);
  return new CliError(summary, exit, hint);
}

function classify(status: number, target: ApiTarget): [ExitCode, string | undefined] {
  if (status === 401) {
    return [
      EXIT.auth,
      target.token
        ? "the token was refused (expired, wrong secret or audience): mint a new one with `loraxs token`"
        : "no token given: set LORAXS_TOKEN or pass --token (mint one with `loraxs token --sub <user> --role user`)",
    ];
  }
  if (status === 403) {
    return [
      EXIT.auth,
      `this token may not act on user ${JSON.stringify(target.user)}: use a token whose sub is that user, or the right role`,
    ];
  }
  if (status === 404)
    return [EXIT.notFound, "check --model, --user and the version (`loraxs versions` lists them)"];
  if (status === 412) {
    return [
      EXIT.conflict,
      "the adapter changed since that ETag: `loraxs pull` the current one (its ETag is printed) and retry, or drop --if-match to overwrite",
    ];
  }
  if (status === 409)
    return [
      EXIT.conflict,
      "the request conflicts with the adapter's current state; pull it and retry",
    ];
  if (status === 413 || status === 415 || status === 422 || status === 400) {
    return [
      EXIT.invalid,
      "the API rejected the request's content; `loraxs inspect --manifest` shows what is wrong with an adapter",
    ];
  }
  return [
    EXIT.network,
    status >= 500
      ? "the API failed; retry later or look at its log (`wrangler tail` / the dev console)"
      : undefined,
  ];
}

/** The token from --token, else LORAXS_TOKEN. */
export function tokenFrom(option: string | undefined, io: Io): string | undefined {
  return option ?? (io.env.LORAXS_TOKEN || undefined);
}
