// The one client of the edge API, and the routes it calls.
export { apiError } from "./api-error.ts";
export { EdgeApi, type EdgeApiOptions, type RequestOptions } from "./client.ts";
export * from "./routes.ts";
