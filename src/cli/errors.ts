/** Exit codes of `loraxs` (documented in docs/cli.md). Scripts branch on these. */
export const EXIT = {
  /** Success; for `inspect`, the adapter is valid (and matches the manifest when one is given). */
  ok: 0,
  /** Invalid input: a malformed adapter, factor or PEFT file, or one that does not match the model. */
  invalid: 1,
  /** Usage error: unknown command or option, missing or malformed argument. */
  usage: 2,
  /** Network or API failure: unreachable host, timeout, 5xx, or an answer the CLI cannot read. */
  network: 3,
  /** The API refused the credentials: 401 (no, expired or bad token) or 403 (not allowed). */
  auth: 4,
  /** The API refused a conditional write: 412 (If-Match did not match) or 409. */
  conflict: 5,
  /** The API has no such adapter, version, or model: 404. */
  notFound: 6,
  /** A bug in the CLI itself (EX_SOFTWARE): the stack is printed. */
  internal: 70,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one line (plus a hint saying what to do) and an exit code. */
export class CliError extends Error {
  readonly exitCode: ExitCode;
  readonly hint: string | undefined;

  constructor(message: string, exitCode: ExitCode, hint?: string) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
    this.hint = hint;
  }
}

/** Bad command line: exit code 2, and the message names the command's `--help`. */
export class UsageError extends CliError {
  constructor(message: string, command?: string) {
    super(message, EXIT.usage, `run \`loraxs ${command ? `${command} ` : ""}--help\` for usage`);
    this.name = "UsageError";
  }
}

/** A file that cannot be used: exit code 1. */
export class InvalidInputError extends CliError {
  constructor(message: string, hint?: string) {
    super(message, EXIT.invalid, hint);
    this.name = "InvalidInputError";
  }
}
