import { parseCommandArgs } from "./args.ts";
import type { Command } from "./command.ts";
import { COMMANDS } from "./commands/index.ts";
import { CliError, EXIT, UsageError } from "./errors.ts";
import { commandHelp, programHelp } from "./help.ts";
import type { Io } from "./io.ts";

/** Runs `loraxs <argv>` and returns the exit code; never exits the process itself. */
export async function main(
  argv: string[],
  io: Io,
  commands: readonly Command[] = COMMANDS,
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.stdout(programHelp(commands));
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = commands.find((c) => c.name === name);
  try {
    if (!command) {
      throw new UsageError(
        `unknown command ${JSON.stringify(name)}; commands: ${commands.map((c) => c.name).join(", ")}`,
      );
    }
    const args = parseCommandArgs(command, rest);
    if (args.help) {
      io.stdout(commandHelp(command));
      return EXIT.ok;
    }
    return await command.run(args, io);
  } catch (error) {
    return report(error, io);
  }
}

function report(error: unknown, io: Io): number {
  if (error instanceof CliError) {
    io.stderr(`loraxs: ${error.message}\n`);
    if (error.hint) io.stderr(`  ${error.hint}\n`);
    return error.exitCode;
  }
  // Anything else is a bug in the CLI: show the stack so it can be reported.
  io.stderr(
    `loraxs: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  return EXIT.internal;
}
