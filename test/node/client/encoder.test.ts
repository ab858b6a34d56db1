// The encoder against PyTorch's reference embeddings in both Node runtimes, and classification
// with a per-user head carried in the adapter.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureModel } from "../../../harness/models.ts";
import {
  caseAdapter,
  maxAbsDiff,
  type Reference,
  readReference,
} from "../../../harness/reference.ts";
import {
  ClientError,
  loadModel,
  memoryCache,
  type PersonalModel,
} from "../../../src/client/index.ts";
import { decodeAdapter, encodeAdapter } from "../../../src/format/index.ts";

/**
 * fp32 on the CPU in both runtimes; differences come from summation order only (see the
 * decoder test). R moves these embeddings by ~3e-3, so 2e-5 still catches a missing R.
 */
const TOLERANCE = 2e-5;

let dir: string;
let ref: Reference;
beforeAll(async () => {
  dir = await ensureModel("tiny-bert");
  ref = readReference(dir);
});

describe.each(["cpu", "wasm"] as const)("tiny-bert on %s", (device) => {
  let model: PersonalModel;
  beforeAll(async () => {
    model = await loadModel(dir, { device, cache: memoryCache() });
  });
  afterAll(async () => {
    await model?.dispose();
  });

  it("embeds the reference text like PyTorch for each adapter, swapped in one session", async () => {
    let previous: Float32Array | undefined;
    for (const c of [...ref.cases, ref.cases[0]]) {
      if (c === undefined) continue;
      model.setAdapter(caseAdapter(dir, c, ref), c.name);
      const [e] = await model.embed([ref.text]);
      if (e === undefined || c.embedding?.[0] === undefined) throw new Error("no embedding");
      expect(maxAbsDiff(e, c.embedding[0])).toBeLessThan(TOLERANCE);
      if (previous !== undefined) expect(maxAbsDiff(previous, e)).toBeGreaterThan(2e-4);
      previous = e;
    }
  });

  it("pads a batch without changing any row's embedding", async () => {
    model.setAdapter(null);
    const texts = ["short", "a much longer sentence with many more tokens in it"];
    const batch = await model.embed(texts);
    for (const [i, t] of texts.entries()) {
      const [alone] = await model.embed([t]);
      expect(maxAbsDiff(batch[i] as Float32Array, alone as Float32Array)).toBeLessThan(1e-5);
    }
  });

  it("classifies with the adapter's head: labels and softmax of e·Wᵀ + b", async () => {
    const c = ref.cases[1];
    const base = c === undefined ? null : caseAdapter(dir, c, ref);
    if (base === null || c?.embedding?.[0] === undefined)
      throw new Error("reference case 1 missing");
    model.setAdapter(base);
    await expect(model.classify(["x"])).rejects.toThrow(ClientError);
    const hidden = model.manifest.config.hidden_size;
    const weight = Float32Array.from({ length: 2 * hidden }, (_, i) => Math.sin(i) * 3);
    const bias = Float32Array.from([0.1, -0.1]);
    const bytes = encodeAdapter(
      {
        model: base.model,
        factors: base.factors,
        rank: base.rank,
        modules: base.modules,
        R: base.R,
        head: { weight, bias, classes: 2, hidden, labels: ["ham", "spam"] },
      },
      { dtype: "F32" },
    );
    model.setAdapter(decodeAdapter(bytes, model.expectations), "with-head");
    const [result] = await model.classify([ref.text]);
    const e = c.embedding[0];
    const logits = [0, 1].map(
      (k) =>
        (bias[k] as number) + e.reduce((s, v, h) => s + v * (weight[k * hidden + h] as number), 0),
    );
    const z = logits.map((l) => Math.exp(l - Math.max(...logits)));
    const [ham, spam] = z.map((v) => v / z.reduce((a, b) => a + b, 0)) as [number, number];
    expect(result?.label).toBe(ham > spam ? "ham" : "spam");
    expect(result?.probabilities.ham).toBeCloseTo(ham, 4);
    expect(result?.probabilities.spam).toBeCloseTo(spam, 4);
  });
});
