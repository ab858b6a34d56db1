// Progress lines for the start, seed and publish scripts: one numbered line per step, with its time.
import { ClientError } from "../../src/client/errors.ts";

/** A step counter that prints "[start] 3/9 building the web bundle" and "… ok (1.2 s)". */
export function steps(tag, total) {
  let n = 0;
  return {
    /** Runs `fn` as the next step; a failure prints the step's name and rethrows. */
    async run(title, fn) {
      n += 1;
      const started = Date.now();
      console.log(`[${tag}] ${n}/${total} ${title}`);
      try {
        const result = await fn();
        const note = typeof result === "string" && result ? ` — ${result}` : "";
        console.log(`[${tag}] ${n}/${total} ok (${seconds(started)} s)${note}`);
        return result;
      } catch (error) {
        console.error(`[${tag}] ${n}/${total} failed after ${seconds(started)} s: ${title}`);
        throw error;
      }
    },
  };
}

export function seconds(since) {
  return ((Date.now() - since) / 1000).toFixed(1);
}

/** "12.3 MB" for byte counts in progress lines. */
export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  if (bytes < 1024 * 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${(bytes / 1024 / 1024 / 1024).toFixed(2)} GB`;
}

/** A failure the scripts report as one line (no stack): the message names the offending value. */
export class ScriptError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "ScriptError";
  }
}

/** Prints a ScriptError as one line, anything else with its stack, and sets the exit code. */
export function reportFailure(tag, error) {
  // The API client's errors (ApiError, OfflineError) say the route, status and the API's code.
  if (error instanceof ScriptError || error instanceof ClientError)
    console.error(`[${tag}] error: ${error.message}`);
  else console.error(`[${tag}] unexpected error:`, error);
  process.exitCode = 1;
}
