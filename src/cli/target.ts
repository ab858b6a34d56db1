// The options every API command shares: --api, --model, --user, --token.

import { type ApiTarget, tokenFrom } from "./api.ts";
import { optionalOption } from "./args.ts";
import type { Args, OptionSpec } from "./command.ts";
import { UsageError } from "./errors.ts";
import type { Io } from "./io.ts";

export const TARGET_OPTIONS: Record<string, OptionSpec> = {
  api: {
    type: "string",
    value: "URL",
    description: "edge API base URL (else LORAXS_API), e.g. http://127.0.0.1:8787",
  },
  model: { type: "string", value: "ID", description: "model id (manifest id)" },
  user: { type: "string", value: "USER", description: "user id (default: the token's sub)" },
  token: { type: "string", value: "JWT", description: "bearer token (else LORAXS_TOKEN)" },
};

/** Builds the API target; `model` may come from the adapter (push) when --model is absent. */
export function targetFrom(args: Args, io: Io, command: string, model?: string): ApiTarget {
  const base = optionalOption(args, "api") ?? io.env.LORAXS_API;
  if (!base) throw new UsageError(`loraxs ${command} needs --api URL (or LORAXS_API)`, command);
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new UsageError(
      `--api ${JSON.stringify(base)} is not a URL; expected e.g. http://127.0.0.1:8787`,
      command,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--api ${JSON.stringify(base)} must be http:// or https://`, command);
  }
  const token = tokenFrom(optionalOption(args, "token"), io);
  const modelId = optionalOption(args, "model") ?? model;
  if (!modelId) throw new UsageError(`loraxs ${command} needs --model ID`, command);
  const user = optionalOption(args, "user") ?? (token ? subjectOf(token) : undefined);
  if (!user)
    throw new UsageError(
      `loraxs ${command} needs --user (or a token whose sub names the user)`,
      command,
    );
  return { base: url.toString().replace(/\/+$/, ""), model: modelId, user, token };
}

/** The `sub` claim of a JWT, read without verifying it (only to default --user). */
export function subjectOf(token: string): string | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as {
      sub?: unknown;
    };
    return typeof claims.sub === "string" ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

/** An ETag without quotes or the weak prefix: what `--if-match` may be given as. */
export function bareEtag(etag: string): string {
  return etag.replace(/^W\//, "").replace(/^"(.*)"$/, "$1");
}

/** An ETag as HTTP writes it. */
export function quotedEtag(etag: string): string {
  return `"${bareEtag(etag)}"`;
}
