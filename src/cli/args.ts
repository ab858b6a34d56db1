import { parseArgs } from "node:util";
import type { Args, Command } from "./command.ts";
import { UsageError } from "./errors.ts";

/** Parses argv for one command; `--help` is always accepted. Throws UsageError on bad input. */
export function parseCommandArgs(command: Command, argv: string[]): Args & { help: boolean } {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, spec] of Object.entries(command.options)) options[name] = { type: spec.type };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(describeParseError(error, command), command.name);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const help = values.help === true;
  if (!help && parsed.positionals.length !== command.positionals.length) {
    const want =
      command.positionals.map((p) => `<${p.name}>`).join(" ") || "no positional arguments";
    const got =
      parsed.positionals.length === 0
        ? "none"
        : parsed.positionals.map((p) => JSON.stringify(p)).join(" ");
    throw new UsageError(`loraxs ${command.name} takes ${want}; got ${got}`, command.name);
  }
  return { values, positionals: parsed.positionals, help };
}

function describeParseError(error: unknown, command: Command): string {
  const message = error instanceof Error ? error.message : String(error);
  const known = ["--help", ...Object.keys(command.options).map((o) => `--${o}`)].join(", ");
  const code = (error as { code?: string }).code;
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const option = /'([^']+)'/.exec(message)?.[1] ?? message;
    return `unknown option ${option} for loraxs ${command.name}; known options: ${known}`;
  }
  if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    return `${message.replace(/\.$/, "")} (loraxs ${command.name})`;
  }
  return message;
}

/** The value of a required string option, or a UsageError naming it. */
export function requireOption(args: Args, name: string, command: string): string {
  const value = args.values[name];
  if (typeof value !== "string" || value === "") {
    throw new UsageError(`loraxs ${command} needs --${name}`, command);
  }
  return value;
}

/** The value of an optional string option. */
export function optionalOption(args: Args, name: string): string | undefined {
  const value = args.values[name];
  return typeof value === "string" ? value : undefined;
}

/** A positive integer option (e.g. `--ttl 3600`), bounded by `max`. */
export function integerOption(
  args: Args,
  name: string,
  command: string,
  fallback: number,
  max: number,
): number {
  const raw = optionalOption(args, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new UsageError(
      `--${name} must be an integer from 1 to ${max}; got ${JSON.stringify(raw)}`,
      command,
    );
  }
  return value;
}

/** A string option restricted to a set of values. */
export function choiceOption<T extends string>(
  args: Args,
  name: string,
  command: string,
  allowed: readonly T[],
  fallback: T,
): T {
  const raw = optionalOption(args, name);
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new UsageError(
      `--${name} must be one of ${allowed.join(", ")}; got ${JSON.stringify(raw)}`,
      command,
    );
  }
  return raw as T;
}
