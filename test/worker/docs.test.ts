// docs/api.md's route table against the OpenAPI document the code builds from its route
// definitions: the same routes, and for each the same statuses.
import { describe, expect, it } from "vitest";
import apiDoc from "../../docs/api.md?raw";
import { call } from "./helpers.ts";

type OpenApi = { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };

/** `GET …/adapter/versions[?limit=N]` → ["get", "/v1/models/{model}/users/{user}/adapter/versions"] */
function routeOf(cell: string): [string, string] {
  const m = /^`(GET|PUT|POST|DELETE) ([^`]+)`$/.exec(cell.trim());
  if (!m) throw new Error(`not a route: ${cell}`);
  let path = (m[2] as string).replace(/\[.*\]$/, "");
  if (path.startsWith("…/users/")) path = `/v1/models/:model${path.slice(1)}`;
  else if (path.startsWith("…/adapter")) path = `/v1/models/:model/users/:user${path.slice(1)}`;
  return [(m[1] as string).toLowerCase(), path.replace(/:(\w+)/g, "{$1}")];
}

function documentedRoutes() {
  const start = apiDoc.indexOf("| route | who | answer | statuses |");
  expect(start).toBeGreaterThan(0);
  const lines = apiDoc.slice(start).split("\n").slice(2);
  const rows = lines.slice(
    0,
    lines.findIndex((l) => !l.startsWith("|")),
  );
  return rows.map((row) => {
    const cells = row.split(" | ");
    const statuses = (cells.at(-1) as string)
      .replace(/\|\s*$/, "")
      .split(";")
      .map((s) => /^\s*(\d{3})\b/.exec(s)?.[1]);
    expect(statuses, row).not.toContain(undefined);
    return { route: routeOf((cells[0] as string).slice(2)), statuses: statuses as string[] };
  });
}

describe("docs/api.md", () => {
  it("lists every route of the OpenAPI document with exactly its statuses", async () => {
    const doc = (await (await call("GET", "/v1/openapi.json")).json()) as OpenApi;
    const documented = documentedRoutes();
    expect(documented.length).toBeGreaterThan(15);
    const seen = new Set<string>();
    for (const { route, statuses } of documented) {
      const [method, path] = route;
      if (path === "/v1/openapi.json") continue;
      const op = doc.paths[path]?.[method];
      expect(op, `${method} ${path} is documented but not in the OpenAPI document`).toBeDefined();
      expect([...statuses].sort(), `${method} ${path}`).toEqual(
        Object.keys(op?.responses ?? {}).sort(),
      );
      seen.add(`${method} ${path}`);
    }
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const method of Object.keys(ops)) {
        expect(seen.has(`${method} ${path}`), `${method} ${path} is not in docs/api.md`).toBe(true);
      }
    }
  });

  it("documents every 401 code the auth layer can answer", async () => {
    const source = (await import("../../src/api/auth.ts?raw")).default;
    const codes = new Set([...source.matchAll(/"(auth\.[a-z_]+)"/g)].map((m) => m[1]));
    expect(codes.size).toBeGreaterThan(10);
    for (const code of codes) expect(apiDoc, code).toContain(`\`${code}\``);
  });
});
