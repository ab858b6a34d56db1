/** What a command may touch besides its files: output streams, environment, cwd, fetch. */
export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  fetch: typeof fetch;
}

/** The process's own streams and environment. */
export function processIo(): Io {
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    cwd: process.cwd(),
    fetch: globalThis.fetch,
  };
}

/** An Io that records what was written (for tests and for embedding the CLI). */
export function bufferIo(
  env: Record<string, string | undefined> = {},
  cwd = process.cwd(),
): Io & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    stdout: (text) => void out.push(text),
    stderr: (text) => void err.push(text),
    env,
    cwd,
    fetch: globalThis.fetch,
  };
}
