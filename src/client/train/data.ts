// Token blocks for training: texts are tokenized, joined with EOS and cut into rows of the
// step graph's fixed length T; the last row is padded (mask 0, label -100). Rows are then
// split into training and held-out rows.
import { ClientError } from "../errors.ts";

/** Labels the loss ignores (padding), as in PyTorch's cross-entropy. */
export const IGNORE_INDEX = -100;

export interface Row {
  ids: number[];
  mask: number[];
  labels: number[];
  /** Tokens whose next-token prediction counts (labels[1:] not ignored). */
  tokens: number;
}

/** Concatenate token sequences (each followed by `eos` when given) and cut them into rows of `seq`. */
export function packRows(
  sequences: readonly (readonly number[])[],
  seq: number,
  eos: number | undefined,
  padId = 0,
): Row[] {
  if (!Number.isInteger(seq) || seq < 2) {
    throw new ClientError("bad_option", `sequence length ${seq}; expected an integer >= 2`);
  }
  const stream: number[] = [];
  for (const s of sequences) {
    for (const id of s) stream.push(id);
    if (eos !== undefined) stream.push(eos);
  }
  const rows: Row[] = [];
  for (let start = 0; start < stream.length; start += seq) {
    const chunk = stream.slice(start, start + seq);
    if (chunk.length < 2) break; // one token predicts nothing
    const pad = seq - chunk.length;
    const ids = [...chunk, ...new Array<number>(pad).fill(padId)];
    const mask = [...new Array<number>(chunk.length).fill(1), ...new Array<number>(pad).fill(0)];
    const labels = ids.map((id, i) => (mask[i] === 1 ? id : IGNORE_INDEX));
    rows.push({ ids, mask, labels, tokens: chunk.length - 1 });
  }
  return rows;
}

/** Deterministic shuffle (xorshift32) so a seed gives the same split and order everywhere. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed >>> 0 || 0x9e3779b9;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

/** Held-out rows: `fraction` of the rows (at least one when there are >= 2 rows and fraction > 0). */
export function splitRows(
  rows: readonly Row[],
  fraction: number,
  seed: number,
): { train: Row[]; heldOut: Row[] } {
  if (!(fraction >= 0 && fraction < 1)) {
    throw new ClientError("bad_option", `held-out fraction ${fraction}; expected in [0, 1)`);
  }
  const order = shuffled(rows, seed);
  const n = fraction === 0 || rows.length < 2 ? 0 : Math.max(1, Math.round(rows.length * fraction));
  return { heldOut: order.slice(0, n), train: order.slice(n) };
}

/** Rows [i·batch, (i+1)·batch) of `rows`, cycling; short batches are filled with empty rows. */
export function batchAt(rows: readonly Row[], index: number, batch: number, seq: number): Row[] {
  const out: Row[] = [];
  for (let k = 0; k < batch; k++) out.push(rows[(index * batch + k) % rows.length] as Row);
  for (const r of out) {
    if (r.ids.length !== seq) {
      throw new ClientError(
        "ragged_batch",
        `row has ${r.ids.length} tokens; the graph takes ${seq}`,
      );
    }
  }
  return out;
}

/** Rows of `rows` in groups of `batch`, the last group padded with all-ignored rows. */
export function batches(rows: readonly Row[], batch: number, seq: number): Row[][] {
  const empty: Row = {
    ids: new Array<number>(seq).fill(0),
    mask: new Array<number>(seq).fill(0),
    labels: new Array<number>(seq).fill(IGNORE_INDEX),
    tokens: 0,
  };
  const out: Row[][] = [];
  for (let i = 0; i < rows.length; i += batch) {
    const group = rows.slice(i, i + batch);
    while (group.length < batch) group.push(empty);
    out.push(group);
  }
  return out;
}
