import { type Backend, cpuTensor, type InferenceSession, type Tensor } from "../backend/index.ts";
import { ClientError } from "../errors.ts";
import type { RSlot } from "../r-slot.ts";
import { checkFeeds, int64Rows } from "./feeds.ts";

/** The encoder graph: sentence embeddings [B, hidden] with the current R. */
export class EncoderRunner {
  private readonly backend: Backend;
  private readonly session: InferenceSession;
  private readonly r: RSlot;
  private readonly rName: string;
  readonly hidden: number;

  constructor(
    backend: Backend,
    session: InferenceSession,
    rName: string,
    hidden: number,
    r: RSlot,
  ) {
    this.backend = backend;
    this.session = session;
    this.rName = rName;
    this.hidden = hidden;
    this.r = r;
  }

  /** Embeddings of token rows (already padded to one length, mask 0 on padding). */
  async embedIds(
    ids: readonly (readonly number[])[],
    mask: readonly (readonly number[])[],
  ): Promise<Float32Array[]> {
    const batch = ids.length;
    const t = ids[0]?.length ?? 0;
    const lease = this.r.acquire();
    try {
      const feeds: Record<string, Tensor> = {
        input_ids: cpuTensor(this.backend, "int64", int64Rows(ids), [batch, t]),
        attention_mask: cpuTensor(this.backend, "int64", int64Rows(mask), [batch, t]),
        [this.rName]: lease.tensor,
      };
      if (this.session.inputNames.includes("token_type_ids")) {
        feeds.token_type_ids = cpuTensor(this.backend, "int64", new BigInt64Array(batch * t), [
          batch,
          t,
        ]);
      }
      checkFeeds(this.session, feeds);
      const out = await this.session.run(feeds, ["sentence_embedding"]);
      const e = out.sentence_embedding;
      if (e === undefined)
        throw new ClientError("bad_outputs", "graph did not return sentence_embedding");
      const data = (e.location === "cpu" ? e.data : await e.getData(true)) as Float32Array;
      return ids.map((_, b) => data.slice(b * this.hidden, (b + 1) * this.hidden));
    } finally {
      lease.release();
    }
  }
}

/** Pad token rows to the longest, with a 1/0 mask. */
export function padRows(
  rows: readonly number[][],
  padId: number,
): { ids: number[][]; mask: number[][] } {
  const width = Math.max(...rows.map((r) => r.length));
  return {
    ids: rows.map((r) => [...r, ...new Array<number>(width - r.length).fill(padId)]),
    mask: rows.map((r) => [
      ...new Array<number>(r.length).fill(1),
      ...new Array<number>(width - r.length).fill(0),
    ]),
  };
}

/** logits = e · weightᵀ + bias, then a softmax. */
export function applyHead(
  embedding: Float32Array,
  head: { weight: Float32Array; bias: Float32Array; classes: number; hidden: number },
): { logits: Float32Array; probabilities: Float32Array } {
  if (embedding.length !== head.hidden) {
    throw new ClientError(
      "hidden_mismatch",
      `embedding has ${embedding.length} values, head expects ${head.hidden}`,
    );
  }
  const logits = new Float32Array(head.classes);
  for (let c = 0; c < head.classes; c++) {
    let sum = head.bias[c] as number;
    for (let h = 0; h < head.hidden; h++)
      sum += (embedding[h] as number) * (head.weight[c * head.hidden + h] as number);
    logits[c] = sum;
  }
  let max = Number.NEGATIVE_INFINITY;
  for (const v of logits) max = Math.max(max, v);
  const probabilities = new Float32Array(head.classes);
  let total = 0;
  for (let c = 0; c < head.classes; c++) {
    probabilities[c] = Math.exp((logits[c] as number) - max);
    total += probabilities[c] as number;
  }
  for (let c = 0; c < head.classes; c++) probabilities[c] = (probabilities[c] as number) / total;
  return { logits, probabilities };
}
