/** A single byte range of a file, inclusive; null serves the whole file. */
export type ByteRange = { start: number; end: number };

/**
 * Parses an HTTP Range header for a file of `size` bytes (RFC 9110 §14). One range is served;
 * a header this parser does not understand, or several ranges, serve the whole file (allowed);
 * a well-formed range outside the file is "unsatisfiable" (416).
 */
export function parseRange(
  header: string | undefined,
  size: number,
): ByteRange | null | "unsatisfiable" {
  if (!header) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return null;
  const [, from = "", to = ""] = match;
  if (from === "" && to === "") return null;
  if (from === "") {
    const suffix = Number(to);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(from);
  const end = to === "" ? size - 1 : Math.min(Number(to), size - 1);
  if (start >= size) return "unsatisfiable";
  if (to !== "" && Number(to) < start) return null;
  return { start, end };
}
