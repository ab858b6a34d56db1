// A static file server on 127.0.0.1 for the client tests: serves a folder, counts requests per
// path, and can be told to corrupt a file or fail, so download behaviour is observable.
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join, normalize } from "node:path";

export interface StaticServer {
  url: string;
  requests: string[];
  /** Paths whose bytes get one byte flipped. */
  corrupt: Set<string>;
  close(): Promise<void>;
}

export async function startStaticServer(root: string): Promise<StaticServer> {
  const requests: string[] = [];
  const corrupt = new Set<string>();
  const server: Server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    requests.push(path);
    const rel = normalize(path).replace(/^\/+/, "");
    if (rel.startsWith("..")) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(join(root, rel));
      if (corrupt.has(path)) body[body.length - 1] = (body[body.length - 1] ?? 0) ^ 0xff;
      res.writeHead(200, { "content-length": String(body.byteLength) });
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
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
