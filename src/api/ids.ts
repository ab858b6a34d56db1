import { badRequest } from "./errors.ts";

/** Model ids: manifest ids, lowercase, usable as a path segment and a key prefix. */
export const MODEL_ID = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** User ids (the JWT sub): no slash, so storage keys stay unambiguous. */
export const USER_ID = /^[A-Za-z0-9._@|:+=-]{1,128}$/;

/** Model file names: one path segment. */
export const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkId(kind: "model" | "user" | "file", value: string): string {
  const pattern = kind === "model" ? MODEL_ID : kind === "user" ? USER_ID : FILE_NAME;
  if (!pattern.test(value) || value.includes("..")) {
    throw badRequest(
      `request.bad_${kind}`,
      `${kind} ${JSON.stringify(value.slice(0, 200))} does not match ${pattern.source}`,
    );
  }
  return value;
}
