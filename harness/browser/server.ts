// The browser tests' page server, on 127.0.0.1 only: the page, the client bundle,
// onnxruntime-web's dist files and model folders, with COOP/COEP so the page is
// crossOriginIsolated (threaded WASM). Counts requests per path.
import { join } from "node:path";
import { type StaticServer, startStaticServer } from "../static-server.ts";
import { BROWSER_DIR, BUNDLE_DIR, REPO } from "./build.ts";

export type PageServer = StaticServer;

/** `models`: URL prefix (e.g. "tiny-llama") → folder, served under /models/<prefix>/. */
export function startPageServer(models: Record<string, string>): Promise<PageServer> {
  return startStaticServer(
    [
      ["/ort/", join(REPO, "node_modules", "onnxruntime-web", "dist")],
      ["/bundle/", BUNDLE_DIR],
      ...Object.entries(models).map(([name, dir]): [string, string] => [`/models/${name}/`, dir]),
      ["/", join(BROWSER_DIR, "page")],
    ],
    { "cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp" },
  );
}
