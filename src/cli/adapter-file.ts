import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import {
  type Adapter,
  type AdapterExpectations,
  AdapterFormatError,
  decodeAdapter,
} from "../format/index.ts";
import { InvalidInputError } from "./errors.ts";

/** Reads a file the user named; a missing file is invalid input that names the full path. */
export async function readInputFile(
  path: string,
  cwd: string,
  what: string,
): Promise<{ path: string; bytes: Uint8Array }> {
  const full = resolve(cwd, path);
  try {
    return { path: full, bytes: new Uint8Array(await readFile(full)) };
  } catch (error) {
    throw new InvalidInputError(
      `cannot read ${what} ${full}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
}

/** Decodes adapter bytes; a format error becomes invalid input carrying the format's code. */
export function decodeOrFail(
  bytes: Uint8Array,
  label: string,
  expect: AdapterExpectations = {},
): Adapter {
  try {
    return decodeAdapter(bytes, expect);
  } catch (error) {
    if (error instanceof AdapterFormatError) {
      throw new InvalidInputError(
        `${label} is not a valid adapter: ${error.message}`,
        hintFor(error.code),
      );
    }
    throw error;
  }
}

function hintFor(code: string): string {
  if (code.endsWith("_mismatch")) {
    return "the adapter was made for another model or factor set: `loraxs inspect <adapter> --manifest <m>` shows which";
  }
  return "docs/adapter-format.md lists every check; `loraxs inspect <adapter>` shows the header";
}
