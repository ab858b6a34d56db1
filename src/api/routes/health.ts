import { createRoute, z } from "@hono/zod-openapi";
import { router } from "../openapi.ts";

const health = createRoute({
  method: "get",
  path: "/v1/health",
  tags: ["health"],
  summary: "Liveness",
  responses: {
    200: {
      description: "Alive",
      content: { "application/json": { schema: z.object({ ok: z.literal(true) }) } },
    },
  },
});

export const healthRoutes = router().openapi(health, (c) => c.json({ ok: true as const }, 200));
