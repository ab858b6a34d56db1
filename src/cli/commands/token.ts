import { mintToken, ROLES, type Role } from "../../shared/tokens.ts";
import { choiceOption, integerOption, optionalOption, requireOption } from "../args.ts";
import type { Command } from "../command.ts";
import { readDevVars } from "../dev-vars.ts";
import { EXIT, UsageError } from "../errors.ts";

/** The API's audience (wrangler.toml `JWT_AUDIENCE`). */
export const DEFAULT_AUDIENCE = "loraxs-edge";

/** Default lifetime: an hour, enough for a development session. */
export const DEFAULT_TTL_SECONDS = 3600;

/** Longest lifetime: 30 days; a development token should not outlive a sprint. */
export const MAX_TTL_SECONDS = 30 * 24 * 3600;

export const token: Command = {
  name: "token",
  summary: "Mint a local development token (HS256 JWT) the edge API accepts.",
  positionals: [],
  options: {
    sub: {
      type: "string",
      value: "USER",
      description: "subject: the user id (or the worker's name)",
    },
    role: {
      type: "string",
      value: "ROLE",
      description: `one of ${ROLES.join(", ")} (default user)`,
    },
    ttl: {
      type: "string",
      value: "SECONDS",
      description: `lifetime (default ${DEFAULT_TTL_SECONDS}, at most ${MAX_TTL_SECONDS})`,
    },
    secret: {
      type: "string",
      value: "S",
      description: "HS256 secret; else JWT_SECRET, else JWT_SECRET in ./.dev.vars",
    },
    audience: {
      type: "string",
      value: "AUD",
      description: `audience (default ${DEFAULT_AUDIENCE}, wrangler.toml JWT_AUDIENCE)`,
    },
    aud: {
      type: "string",
      value: "AUD",
      description: "the same as --audience (the spelling of the former `npm run token`)",
    },
  },
  details: `Prints the token on stdout, so it can be captured:
  export LORAXS_TOKEN=$(loraxs token --sub alice)`,
  async run(args, io) {
    const sub = requireOption(args, "sub", "token");
    const role = choiceOption<Role>(args, "role", "token", ROLES, "user");
    const ttlSeconds = integerOption(args, "ttl", "token", DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS);
    const audience =
      optionalOption(args, "audience") ?? optionalOption(args, "aud") ?? DEFAULT_AUDIENCE;
    const secret =
      optionalOption(args, "secret") || io.env.JWT_SECRET || (await readDevVars(io.cwd)).JWT_SECRET;
    if (!secret) {
      throw new UsageError(
        "no secret: pass --secret, set JWT_SECRET, or put JWT_SECRET=... in ./.dev.vars (the file `wrangler dev` reads)",
        "token",
      );
    }
    io.stdout(`${await mintToken({ sub, role, ttlSeconds, secret, audience })}\n`);
    return EXIT.ok;
  },
};
