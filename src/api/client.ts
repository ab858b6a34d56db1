/**
 * A typed client of the edge API for the client runtime and the CLI.
 *
 * @example
 * const api = apiClient("http://127.0.0.1:8787", token);
 * const res = await api.v1.models[":model"].users[":user"].adapter.$get({ param: { model, user } });
 */
import { hc } from "hono/client";
import type { AppType } from "./app.ts";

export type { AppType };

export function apiClient(baseUrl: string, token?: string, fetchImpl?: typeof fetch) {
  return hc<AppType>(baseUrl, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    ...(fetchImpl ? { fetch: fetchImpl } : {}),
  });
}
