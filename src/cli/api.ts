// The CLI's use of the one API client (src/client/api): every failure turned into a CliError
// whose exit code says which kind it was and whose hint says what to do.
import { EdgeApi } from "../client/api/index.ts";
import { ApiError, OfflineError } from "../client/errors.ts";
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

/**
 * Runs `call` with the API client for `target`; an ApiError or OfflineError becomes a CliError
 * (`method` names the request in the message).
 */
export async function withApi<T>(
  io: Io,
  target: ApiTarget,
  method: string,
  call: (api: EdgeApi) => Promise<T>,
): Promise<T> {
  const api = new EdgeApi({
    api: target.base,
    token: target.token,
    fetch: io.fetch,
    timeoutMs: REQUEST_TIMEOUT_MS,
  });
  try {
    return await call(api);
  } catch (error) {
    if (error instanceof ApiError) throw apiFailure(method, error, target);
    if (error instanceof OfflineError) throw unreachable(error);
    throw error;
  }
}

function unreachable(error: OfflineError): CliError {
  const cause = error.cause as { name?: string; cause?: { code?: string; message?: string } };
  const why =
    cause?.name === "TimeoutError"
      ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`
      : (cause?.cause?.code ?? cause?.cause?.message ?? (error.cause as Error)?.message);
  return new CliError(
    `cannot reach the API at ${error.url}: ${why}`,
    EXIT.network,
    "check --api (the local API runs with `npm run dev` on http://127.0.0.1:8787)",
  );
}

function apiFailure(method: string, error: ApiError, target: ApiTarget): CliError {
  const request = error.requestId ? ` (request id ${error.requestId})` : "";
  const summary = `${method} ${error.url} → ${error.status} ${error.code}: ${error.detail}${request}`;
  const [exit, hint] = classify(error.status, target);
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
