/** The edge API worker: Hono app on Cloudflare Workers with KV, D1 and R2. */
import { app } from "./app.ts";

export { type MintOptions, mintToken, type Role } from "../shared/tokens.ts";
export type { AppType } from "./app.ts";
export { ApiError } from "./errors.ts";
export default app;
