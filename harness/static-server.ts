// A static file server on 127.0.0.1 for the client and browser tests: serves folders under URL
// prefixes, counts requests per path, and can be told to corrupt a file, so download behaviour
// is observable.
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { extname, join, normalize } from "node:path";

export interface StaticServer {
  url: string;
  requests: string[];
  /** Paths whose bytes get one byte flipped. */
  corrupt: Set<string>;
  close(): Promise<void>;
}

/** A URL prefix ("/models/x/") served from a folder; the first prefix a path starts with wins. */
export type Mount = [prefix: string, dir: string];

const TYPES: Record<string, string> = {
  ".html": "text/html",
  ".mjs": "text/javascript",
  ".js": "text/javascript",
  ".map": "application/json",
  ".json": "application/json",
  ".wasm": "application/wasm",
};

/**
 * Serves `root` (one folder at "/", or mounts); a path ending in "/" serves its index.html.
 * `headers` go on every file answered.
 */
export async function startStaticServer(
  root: string | Mount[],
  headers: Record<string, string> = {},
): Promise<StaticServer> {
  const mounts: Mount[] = typeof root === "string" ? [["/", root]] : root;
  const requests: string[] = [];
  const corrupt = new Set<string>();
  const server: Server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    requests.push(path);
    const mount = mounts.find(([prefix]) => path.startsWith(prefix));
    const rel = normalize(path.slice(mount?.[0].length ?? 0) || "index.html");
    if (mount === undefined || rel.startsWith("..")) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(join(mount[1], rel));
      if (corrupt.has(path)) body[body.length - 1] = (body[body.length - 1] ?? 0) ^ 0xff;
      res.writeHead(200, {
        "content-type": TYPES[extname(rel)] ?? "application/octet-stream",
        "content-length": String(body.byteLength),
        ...headers,
      });
      res.end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("server has no port");
  return {
    url: `http://127.0.0.1:${address.port}`,
    requests,
    corrupt,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
