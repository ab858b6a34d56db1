import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { manifestSchema } from "../manifest/index.ts";
import type { AppEnv } from "./env.ts";
import { ApiError, errorResponse } from "./errors.ts";
import { corsFromEnv, requestContext } from "./middleware.ts";
import { router } from "./openapi.ts";
import { adapterRoutes } from "./routes/adapters.ts";
import { healthRoutes } from "./routes/health.ts";
import { jobRoutes } from "./routes/jobs.ts";
import { modelRoutes } from "./routes/models.ts";

/** The edge API: middleware, the routers, one error handler, JSON 404 / 405. */
const api = router();
api.use("*", requestContext);
api.use("*", corsFromEnv);

export const app = api
  .route("/", healthRoutes)
  .route("/", modelRoutes)
  .route("/", adapterRoutes)
  .route("/", jobRoutes);

// zod's own JSON Schema of the manifest (its cross-field rules are checked by parseManifest).
app.openAPIRegistry.registerComponent(
  "schemas",
  "Manifest",
  z.toJSONSchema(manifestSchema, { io: "input", unrepresentable: "any" }) as never,
);
app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
  type: "http",
  scheme: "bearer",
  bearerFormat: "JWT",
});

app.doc31("/v1/openapi.json", {
  openapi: "3.1.0",
  info: {
    title: "loraxs-edge",
    version: "1.0.0",
    description:
      'Per-user LoRA-XS adapters at the edge. Errors are {"error": {"code", "message"}}.',
  },
});

app.onError((err, c: Context<AppEnv>) => {
  if (err instanceof ApiError) {
    c.set("errorCode", err.code);
    return errorResponse(err.status, err.code, err.message, err.headers);
  }
  if (err instanceof HTTPException && err.status < 500) {
    const code = err.status === 400 ? "request.bad_json" : `http.${err.status}`;
    c.set("errorCode", code);
    return errorResponse(err.status, code, err.message || "bad request");
  }
  c.set("errorCode", "internal");
  console.log(
    JSON.stringify({
      level: "error",
      msg: "unhandled",
      request_id: c.get("requestId"),
      error: String(err),
      stack: err instanceof Error ? err.stack?.split("\n").slice(0, 6).join(" | ") : undefined,
    }),
  );
  return errorResponse(500, "internal", `internal error; request id ${c.get("requestId")}`);
});

// Path patterns of every route, to tell 405 (known path, other method) from 404.
let patterns: { method: string; re: RegExp }[] | undefined;
function allowedMethods(path: string) {
  patterns ??= app.routes
    .filter((r) => r.method !== "ALL")
    .map((r) => ({
      method: r.method,
      re: new RegExp(`^${r.path.replace(/:[^/]+/g, "[^/]+")}$`),
    }));
  return [...new Set(patterns.filter((p) => p.re.test(path)).map((p) => p.method))];
}

app.notFound((c) => {
  const path = new URL(c.req.url).pathname;
  const allowed = allowedMethods(path);
  if (allowed.length) {
    c.set("errorCode", "route.method_not_allowed");
    return errorResponse(
      405,
      "route.method_not_allowed",
      `${c.req.method} is not allowed on ${path}; allowed: ${allowed.join(", ")}`,
      { allow: allowed.join(", ") },
    );
  }
  c.set("errorCode", "route.not_found");
  return errorResponse(404, "route.not_found", `no route ${c.req.method} ${path}`);
});

export type AppType = typeof app;
