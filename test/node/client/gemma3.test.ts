// Gemma 3 in the client: tiny random Gemma 3 (local layers with a window of 8, prompts of 19 tokens
// plus 8 greedy steps) in both Node runtimes, each on the graph the manifest lists first for it:
// logits of every reference case within the fixture tolerance, greedy decoding with the KV cache
// equal to PyTorch's tokens past the window, and Gemma's chat template through the loaded tokenizer.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { caseAdapter, caseGreedy, maxAbsDiff } from "../../../harness/reference.ts";
import {
  type Device,
  loadModel,
  memoryCache,
  type PersonalModel,
} from "../../../src/client/index.ts";
import { serveModel } from "./helpers/served-model.ts";

const m = serveModel("tiny-gemma3");

describe.each(["cpu", "wasm"] as Device[])("tiny Gemma 3 on %s", (device) => {
  let model: PersonalModel;
  beforeAll(async () => {
    model = await loadModel(m.manifestUrl, { device, cache: memoryCache() });
  });
  afterAll(async () => {
    await model?.dispose();
  });

  it("runs the fused graph and matches PyTorch's logits for every adapter", async () => {
    expect(model.graph.name).toBe("fused");
    expect(m.ref.cases.every((c) => (c.input_ids[0]?.length ?? 0) > 8)).toBe(true);
    for (const c of m.ref.cases) {
      model.setAdapter(caseAdapter(m.dir, c, m.ref), c.name);
      const [logits] = await model.forward(c.input_ids, c.attention_mask);
      expect(maxAbsDiff(logits as Float32Array, c.logits_last?.[0] as number[])).toBeLessThan(
        m.ref.tolerance,
      );
    }
  });

  it("greedy decoding with the KV cache yields PyTorch's tokens past the local window", async () => {
    for (const c of m.ref.cases) {
      model.setAdapter(caseAdapter(m.dir, c, m.ref), c.name);
      expect(await caseGreedy(model, c)).toEqual(c.greedy);
    }
  });
});
