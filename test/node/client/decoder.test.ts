import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  caseAdapter,
  caseGreedy,
  maxAbsDiff,
  type ReferenceCase,
} from "../../../harness/reference.ts";
import {
  AbortedError,
  AdapterRefusedError,
  type Device,
  fsCache,
  loadModel,
  type PersonalModel,
} from "../../../src/client/index.ts";
import { serveModel, useTempDir } from "./helpers/served-model.ts";

/**
 * Largest logit difference accepted per backend. Both run fp32 on the CPU and differ from
 * PyTorch only in summation order: prepare's own onnxruntime check of this graph saw 8.6e-6 on
 * logits up to |7|, and these runtimes measure 3e-6 to 9e-6 (the toolchain probe: 3e-6 node,
 * 1.8e-6 wasm). 5e-5 leaves room for that, equals half prepare's fixture tolerance (1e-4), and
 * is 10^5 × below what R moves the logits by (≈ 7), so a missing or wrong R fails.
 */
const TOLERANCE: Record<"cpu" | "wasm", number> = { cpu: 5e-5, wasm: 5e-5 };

const m = serveModel("tiny-llama");
const cacheDir = useTempDir("loraxs-decoder-");

describe.each(["cpu", "wasm"] as const)(
  "tiny-llama on %s",
  (device: Extract<Device, "cpu" | "wasm">) => {
    let model: PersonalModel;
    beforeAll(async () => {
      model = await loadModel(m.manifestUrl, {
        device,
        cache: await fsCache(cacheDir.path),
      });
    });
    afterAll(async () => {
      await model?.dispose();
    });

    it("tokenizes the reference text to prepare's ids", () => {
      expect(model.tokenizer?.encode(m.ref.text)).toEqual(m.ref.cases[0]?.input_ids[0]);
    });

    it("reproduces every case's last-position logits with R swapped in one session", async () => {
      // base → adapter 1 → adapter 2 → base again, without reloading anything.
      const order = [...m.ref.cases, m.ref.cases[0]];
      const errors: Record<string, number> = {};
      let previous: Float32Array | undefined;
      for (const c of order) {
        if (c === undefined) continue;
        model.setAdapter(caseAdapter(m.dir, c, m.ref), c.name);
        const [logits] = await model.forward(c.input_ids, c.attention_mask);
        if (logits === undefined || c.logits_last?.[0] === undefined) throw new Error("no logits");
        errors[c.name] = maxAbsDiff(logits, c.logits_last[0]);
        expect(errors[c.name]).toBeLessThan(TOLERANCE[device]);
        // Each swap really changes the outputs (far beyond the tolerance).
        if (previous !== undefined) expect(maxAbsDiff(previous, logits)).toBeGreaterThan(1e-2);
        previous = logits;
      }
      expect(model.backend.device).toBe(device);
      console.log(`${device}: max abs logit error per case`, errors);
    });

    it("greedy decoding with the KV cache yields PyTorch's tokens for each adapter", async () => {
      for (const c of m.ref.cases) {
        model.setAdapter(caseAdapter(m.dir, c, m.ref), c.name);
        expect(await caseGreedy(model, c)).toEqual(c.greedy);
      }
    });

    it("samples reproducibly, stops at a stop string and honours maxTokens", async () => {
      model.setAdapter(caseAdapter(m.dir, m.ref.cases[1] as ReferenceCase, m.ref));
      const prompt = [{ role: "user" as const, content: "Tell me something." }];
      const a = await model.complete(prompt, {
        maxTokens: 12,
        temperature: 0.9,
        topK: 50,
        topP: 0.95,
        seed: 5,
      });
      const b = await model.complete(prompt, {
        maxTokens: 12,
        temperature: 0.9,
        topK: 50,
        topP: 0.95,
        seed: 5,
      });
      expect(a).toEqual(b);
      expect(a.tokens).toHaveLength(12);
      // Random weights never emit the end token here; a stop string from the middle of the text ends it.
      const stop = a.text.slice(Math.floor(a.text.length / 2), Math.floor(a.text.length / 2) + 3);
      const stopped = await model.complete(prompt, {
        maxTokens: 12,
        temperature: 0.9,
        topK: 50,
        topP: 0.95,
        seed: 5,
        stop: [stop],
      });
      expect(stopped.text).toBe(a.text.slice(0, a.text.indexOf(stop)));
      expect(stopped.tokens.length).toBeLessThan(12);
    });

    it("streams chunks and cancels through an AbortSignal", async () => {
      const controller = new AbortController();
      const seen: number[] = [];
      const run = async () => {
        for await (const chunk of model.generate("Once upon a time", {
          maxTokens: 50,
          temperature: 1,
          seed: 2,
          signal: controller.signal,
        })) {
          seen.push(chunk.token);
          if (seen.length === 3) controller.abort("user left");
        }
      };
      await expect(run()).rejects.toThrow(AbortedError);
      expect(seen).toHaveLength(3);
    });

    it("refuses an adapter for other factors and keeps the current R", async () => {
      const good = caseAdapter(m.dir, m.ref.cases[1] as ReferenceCase, m.ref);
      if (good === null) throw new Error("case 1 has no adapter");
      model.setAdapter(good, "good");
      const foreign = { ...good, factors: `sha256:${"ab".repeat(32)}` };
      expect(() => model.setAdapter(foreign)).toThrow(AdapterRefusedError);
      expect(model.adapterLabel).toBe("good");
    });
  },
);

describe("cache", () => {
  it("a second start downloads nothing but the manifest", async () => {
    m.server.requests.length = 0;
    const again = await loadModel(m.manifestUrl, {
      device: "cpu",
      cache: await fsCache(cacheDir.path),
    });
    try {
      expect(m.server.requests).toEqual(["/manifest.json"]);
      expect(again.timings.downloadedBytes).toBe(0);
    } finally {
      await again.dispose();
    }
  });
});
