import type { ApiTarget } from "../api.ts";
import { CliError, EXIT } from "../errors.ts";
import type { Io } from "../io.ts";

/** The `201 {"version", "etag", "bytes"}` answer of PUT and restore. */
export interface WriteResult {
  version: string | number;
  etag: string;
  bytes: number;
}

export async function printWrite(
  io: Io,
  response: Response,
  target: ApiTarget,
  json: boolean,
  verb: string,
): Promise<WriteResult> {
  const result = await readJson<WriteResult>(response);
  if (json) io.stdout(`${JSON.stringify(result)}\n`);
  else {
    io.stdout(
      `${verb} ${target.model}/${target.user}: version ${result.version}, etag ${result.etag}, ${result.bytes} bytes\n`,
    );
  }
  return result;
}

/** Parses a JSON answer; a non-JSON 2xx is an API fault (exit 3). */
export async function readJson<T>(response: Response): Promise<T> {
  const text = await response.text();
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new CliError(
      `the API answered ${response.status} with a body that is not JSON: ${JSON.stringify(text.slice(0, 200))}`,
      EXIT.network,
    );
  }
}
