// The real edge API for the CLI's network tests: the project's local edge harness
// (scripts/edge/wrangler.mjs) with the test's secret, stopped by PID.
import { freePort, startLocalEdge } from "../../../scripts/edge/wrangler.mjs";

export { freePort };

export interface DevApi {
  url: string;
  secret: string;
  stop(): Promise<void>;
}

export async function startDevApi(secret: string): Promise<DevApi> {
  const edge = await startLocalEdge({ vars: { JWT_SECRET: secret } });
  return { url: edge.url, secret, stop: edge.stop };
}
