import { ApiError, badRequest } from "./errors.ts";

const tooLarge = (what: string, size: number | string, limit: number) =>
  new ApiError(
    413,
    "request.too_large",
    `${what} of ${size} bytes exceeds the limit of ${limit} bytes`,
  );

/** Rejects a declared Content-Length over `limit` before any byte is read. */
export function checkDeclaredLength(request: Request, limit: number, what = "body") {
  const declared = request.headers.get("content-length");
  if (declared === null) return null;
  const n = Number(declared);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw badRequest(
      "request.bad_length",
      `Content-Length ${JSON.stringify(declared)} is not a byte count`,
    );
  }
  if (n > limit) throw tooLarge(what, n, limit);
  return n;
}

/** Reads a request body into memory, never holding more than `limit` bytes (413 past it). */
export async function readBytes(
  request: Request,
  limit: number,
  what = "body",
): Promise<Uint8Array> {
  checkDeclaredLength(request, limit, what);
  if (!request.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel();
      throw tooLarge(what, `more than ${limit}`, limit);
    }
    chunks.push(value);
  }
  if (chunks.length === 1 && chunks[0]) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}
