#!/usr/bin/env node
// The `loraxs` executable: the only place in the project that exits the process.
import { processIo } from "./io.ts";
import { main } from "./main.ts";

const code = await main(process.argv.slice(2), processIo());
// Let stdout drain (it may be a pipe) before exiting with the command's code.
await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
process.exit(code);
