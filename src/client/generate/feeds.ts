import type { InferenceSession, Tensor } from "../backend/index.ts";
import { ClientError } from "../errors.ts";

/** Check a feed against the session's inputs by name before running (missing or unknown names). */
export function checkFeeds(session: InferenceSession, feeds: Record<string, Tensor>): void {
  const expected = session.inputNames;
  const missing = expected.filter((name) => !(name in feeds));
  const unknown = Object.keys(feeds).filter((name) => !expected.includes(name));
  if (missing.length > 0 || unknown.length > 0) {
    throw new ClientError(
      "bad_inputs",
      `inputs do not match the graph: missing [${missing.join(", ")}], unknown [${unknown.join(", ")}]; the graph takes [${expected.join(", ")}]`,
    );
  }
}

/** int64 tensor data from rows of numbers. */
export function int64Rows(rows: readonly (readonly number[])[]): BigInt64Array {
  const width = rows[0]?.length ?? 0;
  const out = new BigInt64Array(rows.length * width);
  rows.forEach((row, r) => {
    if (row.length !== width) {
      throw new ClientError(
        "ragged_batch",
        `row ${r} has ${row.length} tokens, row 0 has ${width}`,
      );
    }
    for (let i = 0; i < width; i++) out[r * width + i] = BigInt(row[i] as number);
  });
  return out;
}
