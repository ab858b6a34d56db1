import type { Io } from "./io.ts";

/** One option of a command, as `node:util` parseArgs takes it plus what help prints. */
export interface OptionSpec {
  type: "string" | "boolean";
  /** Placeholder shown in help, e.g. `URL` for `--api URL`. */
  value?: string;
  description: string;
}

export interface PositionalSpec {
  name: string;
  description: string;
}

/** A parsed command line: options by name, positionals in order. */
export interface Args {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** A `loraxs` subcommand: what help prints and what runs. Returns the exit code. */
export interface Command {
  name: string;
  summary: string;
  positionals: PositionalSpec[];
  options: Record<string, OptionSpec>;
  /** Extra paragraphs for `--help`: what the command writes, examples. */
  details?: string;
  run(args: Args, io: Io): Promise<number>;
}
