import { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "./env.ts";
import { ApiError } from "./errors.ts";
import { ErrorSchema } from "./schemas.ts";

const STATUS_TEXT: Record<number, string> = {
  400: "Bad request (malformed JSON, path or header)",
  401: "Missing or invalid token",
  403: "Token may not act on this object",
  404: "Not found",
  409: "Conflict (lease lost, already completed)",
  412: "If-Match does not match the current adapter",
  413: "Body over the limit",
  415: "Body is not JSON",
  416: "Range not satisfiable",
  422: "Body failed validation",
  429: "Write rate limit; see Retry-After",
};

/** The error answers of a route, for the OpenAPI document. */
export function errors(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((s) => [
      s,
      {
        description: STATUS_TEXT[s] ?? "Error",
        content: { "application/json": { schema: ErrorSchema } },
      },
    ]),
  ) as Record<
    number,
    { description: string; content: { "application/json": { schema: typeof ErrorSchema } } }
  >;
}

export const bearer = [{ bearer: [] }];

/** A router whose validation failures become JSON errors: 400 for path/query/header, 422 for bodies. */
export function router() {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (result.success) return;
      const issues = result.error.issues
        .slice(0, 5)
        .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
        .join("; ");
      const where = result.target;
      if (where === "json" || where === "form") {
        throw new ApiError(422, "request.invalid", `body failed validation: ${issues}`);
      }
      const values = where === "param" ? c.req.param() : {};
      throw new ApiError(
        400,
        `request.bad_${where}`,
        `${where} failed validation: ${issues}${where === "param" ? ` (got ${JSON.stringify(values)})` : ""}`,
      );
    },
  });
}
