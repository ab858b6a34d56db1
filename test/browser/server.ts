// Static server for the browser tests, on 127.0.0.1 only: the page, the client bundle,
// onnxruntime-web's dist files and model folders, with COOP/COEP so the page is
// crossOriginIsolated (threaded WASM). Counts requests per path.
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { extname, join, normalize } from "node:path";
import { BROWSER_DIR, BUNDLE_DIR, REPO } from "./build.ts";

const TYPES: Record<string, string> = {
  ".html": "text/html",
  ".mjs": "text/javascript",
  ".js": "text/javascript",
  ".map": "application/json",
  ".json": "application/json",
  ".wasm": "application/wasm",
};

export interface PageServer {
  url: string;
  requests: string[];
  close(): Promise<void>;
}

/** `models`: URL prefix (e.g. "tiny-llama") → folder. */
export async function startPageServer(models: Record<string, string>): Promise<PageServer> {
  const roots: [string, string][] = [
    ["/ort/", join(REPO, "node_modules", "onnxruntime-web", "dist")],
    ["/bundle/", BUNDLE_DIR],
    ...Object.entries(models).map(([name, dir]): [string, string] => [`/models/${name}/`, dir]),
    ["/", join(BROWSER_DIR, "page")],
  ];
  const requests: string[] = [];
  const server: Server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    requests.push(path);
    const root = roots.find(([prefix]) => path.startsWith(prefix));
    const rel = normalize(path.slice(root?.[0].length ?? 0) || "index.html");
    if (root === undefined || rel.startsWith("..")) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(join(root[1], rel));
      res.writeHead(200, {
        "content-type": TYPES[extname(rel)] ?? "application/octet-stream",
        "content-length": String(body.byteLength),
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-embedder-policy": "require-corp",
      });
      res.end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return {
    url: `http://127.0.0.1:${address.port}`,
    requests,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
