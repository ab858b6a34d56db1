import { isNode } from "../platform.ts";

/**
 * Where a model lives. Either the edge API (`…/v1/models/<id>`: manifest there, files under
 * `…/files/<name>`), a static host (a URL ending in `manifest.json`, files beside it), or in Node a
 * local folder holding `manifest.json` and the files.
 */
export interface ModelSource {
  readonly location: string;
  manifestUrl: string;
  fileUrl(name: string): string;
  /** GET with progress; throws on a non-2xx status. */
  open(url: string, init?: RequestInit): Promise<Response>;
}

export function modelSource(location: string, fetchImpl: typeof fetch = fetch): ModelSource {
  // In a page, a relative location is relative to the page.
  const page = (globalThis as { location?: { href?: string } }).location?.href;
  if (!isNode() && page !== undefined && !/^[a-z]+:/i.test(location)) {
    return modelSource(new URL(location, page).href, fetchImpl);
  }
  if (/^https?:\/\//.test(location)) {
    const url = new URL(location);
    const isStatic = url.pathname.endsWith(".json");
    const base = location.replace(/\/+$/, "");
    return {
      location,
      manifestUrl: isStatic ? location : base,
      fileUrl: (name) =>
        isStatic
          ? new URL(encodeURIComponent(name), url).href
          : `${base}/files/${encodeURIComponent(name)}`,
      open: (u, init) => fetchImpl(u, init),
    };
  }
  if (!isNode())
    throw new TypeError(`model location ${JSON.stringify(location)} is not an http(s) URL`);
  const dir = location.startsWith("file://") ? new URL(location).pathname : location;
  return {
    location,
    manifestUrl: `${dir.replace(/\/+$/, "")}/manifest.json`,
    fileUrl: (name) => `${dir.replace(/\/+$/, "")}/${name}`,
    open: async (path) => {
      const { readFile } = await import("node:fs/promises");
      try {
        const buf = await readFile(path);
        return new Response(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), {
          headers: { "content-length": String(buf.byteLength) },
        });
      } catch (error) {
        return new Response(String(error), { status: 404 });
      }
    },
  };
}
