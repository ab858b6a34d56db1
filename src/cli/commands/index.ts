import type { Command } from "../command.ts";
import { token } from "./token.ts";

/** Every `loraxs` command, in the order `loraxs --help` lists them. */
export const COMMANDS: readonly Command[] = [token];
