export type { Args, Command, OptionSpec } from "./command.ts";
export { COMMANDS } from "./commands/index.ts";
export { CliError, EXIT, type ExitCode, InvalidInputError, UsageError } from "./errors.ts";
export { bufferIo, type Io, processIo } from "./io.ts";
export { main } from "./main.ts";
