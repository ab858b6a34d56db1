import type { Command } from "../command.ts";
import { exportPeft } from "./export-peft.ts";
import { importPeft } from "./import-peft.ts";
import { inspect } from "./inspect.ts";
import { pull } from "./pull.ts";
import { push } from "./push.ts";
import { restore } from "./restore.ts";
import { rm } from "./rm.ts";
import { token } from "./token.ts";
import { versions } from "./versions.ts";

/** Every `loraxs` command, in the order `loraxs --help` lists them. */
export const COMMANDS: readonly Command[] = [
  inspect,
  exportPeft,
  importPeft,
  push,
  pull,
  versions,
  restore,
  rm,
  token,
];
