import type { StoredAdapter } from "../../client/api/index.ts";
import type { ApiTarget } from "../api.ts";
import type { Io } from "../io.ts";

/** Prints the `201 {"version", "etag", "bytes"}` answer of PUT and restore. */
export function printWrite(
  io: Io,
  result: StoredAdapter,
  target: ApiTarget,
  json: boolean,
  verb: string,
): StoredAdapter {
  if (json) io.stdout(`${JSON.stringify(result)}\n`);
  else {
    io.stdout(
      `${verb} ${target.model}/${target.user}: version ${result.version}, etag ${result.etag}, ${result.bytes} bytes\n`,
    );
  }
  return result;
}
