// A small client for the edge API routes the scripts use; every failure names the route and the API's error code.
import { ScriptError } from "./log.mjs";

/** Calls `base + path`; statuses in `accept` are returned, others throw with the API's error body. */
export async function call(
  base,
  path,
  { method = "GET", token, body, headers = {}, accept = [] } = {},
) {
  const url = `${base.replace(/\/+$/, "")}${path}`;
  const all = { ...headers };
  if (token) all.authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url, { method, headers: all, body });
  } catch (error) {
    throw new ScriptError(`${method} ${url} failed: ${error.cause?.message ?? error.message}`);
  }
  if (response.ok || accept.includes(response.status)) return response;
  throw new ScriptError(
    `${method} ${url} answered ${response.status}: ${await describeError(response)}`,
  );
}

/** "code: message" from an API error body, or the start of a non-JSON body. */
export async function describeError(response) {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text);
    if (error?.code) return `${error.code}: ${error.message}`;
  } catch {}
  return JSON.stringify(text.slice(0, 300));
}

const path = (...segments) => `/${segments.map(encodeURIComponent).join("/")}`;

export const routes = {
  health: () => "/v1/health",
  manifest: (model) => path("v1", "models", model),
  putManifest: (model) => path("v1", "models", model, "manifest"),
  file: (model, name) => path("v1", "models", model, "files", name),
  adapter: (model, user) => path("v1", "models", model, "users", user, "adapter"),
};

/** The manifest the API serves for `model`, or null when it has none. */
export async function fetchManifest(base, model) {
  const response = await call(base, routes.manifest(model), { accept: [404] });
  if (response.status === 404) {
    await response.body?.cancel();
    return null;
  }
  return await response.json();
}

/** Size and ETag of a model file the API serves, or null when it is missing. */
export async function headFile(base, model, name) {
  const response = await call(base, routes.file(model, name), { method: "HEAD", accept: [404] });
  if (response.status === 404) return null;
  return {
    bytes: Number(response.headers.get("content-length")),
    etag: response.headers.get("etag"),
  };
}

/** The current adapter's ETag (its sha256 hex, unquoted) for `user`, or null when there is none. */
export async function adapterEtag(base, model, user, token) {
  const response = await call(base, routes.adapter(model, user), {
    method: "HEAD",
    token,
    accept: [404],
  });
  if (response.status === 404) return null;
  return response.headers.get("etag")?.replace(/^W\//, "").replace(/^"|"$/g, "") ?? null;
}
