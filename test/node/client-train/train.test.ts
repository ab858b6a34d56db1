// On-device training of R on tiny-llama: the exported step graph against PyTorch autograd in
// onnxruntime-node and onnxruntime-web (wasm), the JS AdamW against torch.optim.AdamW, the whole
// personalize flow (adapter through src/format, active without reloading), cancellation, and
// the upload through the real local edge API with If-Match.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ConflictError,
  type Device,
  fsCache,
  loadModel,
  type PersonalModel,
} from "../../../src/client/index.ts";
import {
  evaluate,
  IGNORE_INDEX,
  OnDeviceTrainer,
  packRows,
  type Row,
  splitRows,
  type TrainEvent,
  trainRows,
} from "../../../src/client/train/index.ts";
import { decodeAdapter } from "../../../src/format/index.ts";
import { type LocalApi, publishModel, startApi } from "../client/helpers/wrangler.ts";
import { ensureTrainModel, readTrainReference, type TrainReference } from "./model.ts";

/**
 * fp32 graph vs fp32 PyTorch differ only in summation order: export's own check sees ~1e-7
 * (loss, relative) and ~2e-6 (gradient, relative to its largest entry). These bounds are 100x
 * that and still far below what a wrong mask, shift or R wiring changes (order 1).
 */
const LOSS_REL_TOL = 1e-5;
const GRAD_REL_TOL = 1e-4;
/**
 * 20 AdamW steps at lr 0.01 move R by ~0.2. Adam divides by sqrt(v), so entries whose gradient
 * is near zero amplify fp32 summation noise: the worst entry differs by ~3e-4, the mean by
 * ~1e-6. Weight decay alone moves the mean by ~1e-4 and bias correction by far more, so the
 * mean bound catches a wrong formula while the max bound tolerates the noise.
 */
const ADAMW_R_MAX_TOL = 2e-3;
const ADAMW_R_MEAN_TOL = 2e-5;
const ADAMW_LOSS_REL_TOL = 1e-4;

const TEXTS = [
  "My cat Miso sleeps on the keyboard every morning. ",
  "Miso the cat likes the warm keyboard and the morning sun. ",
  "Every morning, the keyboard belongs to Miso, my cat. ",
];

let dir: string;
let ref: TrainReference;
let cacheDir: string;

const refRows = (r: TrainReference): Row[] =>
  r.input_ids.map((ids, i) => ({
    ids,
    mask: r.attention_mask[i] as number[],
    labels: r.labels[i] as number[],
    tokens: (r.labels[i] as number[]).slice(1).filter((l) => l !== IGNORE_INDEX).length,
  }));

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}
function meanAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs((a[i] as number) - (b[i] as number));
  return s / a.length;
}
const absMax = (a: ArrayLike<number>) => maxAbs(a, new Float32Array(a.length));

beforeAll(async () => {
  dir = await ensureTrainModel();
  ref = readTrainReference(dir);
  cacheDir = mkdtempSync(join(tmpdir(), "loraxs-train-"));
});
afterAll(() => {
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
});

describe.each(["cpu", "wasm"] as const)(
  "training step on %s",
  (device: Extract<Device, "cpu" | "wasm">) => {
    let model: PersonalModel;
    let trainer: OnDeviceTrainer;
    beforeAll(async () => {
      model = await loadModel(dir, { device, cache: await fsCache(join(cacheDir, device)) });
      trainer = await OnDeviceTrainer.create(model, dir);
    });
    afterAll(async () => {
      await trainer?.dispose();
      await model?.dispose();
    });

    it("shares the inference graph's weights file", () => {
      expect(trainer.info.onnx_train.data_file).toBe(model.manifest.onnx?.data_file);
      expect(trainer.info.onnx_train.shapes).toEqual(ref.shapes);
    });

    it("loss and dL/dR match PyTorch autograd", async () => {
      const r = await trainer.step.run(refRows(ref), new Float32Array(ref.R));
      expect(Math.abs(r.loss - ref.loss) / ref.loss).toBeLessThan(LOSS_REL_TOL);
      const scale = absMax(ref.grad);
      expect(scale).toBeGreaterThan(0);
      expect(maxAbs(r.grad, ref.grad) / scale).toBeLessThan(GRAD_REL_TOL);
      // The gradient depends on R: a zero R gives a different one.
      const z = await trainer.step.run(refRows(ref), new Float32Array(ref.R.length));
      expect(maxAbs(z.grad, ref.grad) / scale).toBeGreaterThan(100 * GRAD_REL_TOL);
    });

    it("20 steps of the JS AdamW track torch.optim.AdamW on the same batch", async () => {
      const a = ref.adamw;
      const result = await trainRows(trainer.step, refRows(ref), new Float32Array(ref.R), {
        steps: a.steps,
        lr: a.lr,
        weightDecay: a.weight_decay,
        beta1: a.betas[0],
        beta2: a.betas[1],
        eps: a.eps,
        minLrRatio: 1,
        clipNorm: Number.POSITIVE_INFINITY,
        heldOut: 0,
      });
      expect(result.steps).toBe(a.steps);
      for (let t = 0; t < a.steps; t++) {
        const want = a.losses[t] as number;
        expect(Math.abs((result.losses[t] as number) - want) / want).toBeLessThan(
          ADAMW_LOSS_REL_TOL,
        );
      }
      expect(a.losses[a.steps - 1] as number).toBeLessThan((a.losses[0] as number) - 0.1);
      expect(maxAbs(result.R, a.R)).toBeLessThan(ADAMW_R_MAX_TOL);
      expect(meanAbs(result.R, a.R)).toBeLessThan(ADAMW_R_MEAN_TOL);
      expect(maxAbs(result.R, ref.R)).toBeGreaterThan(0.05);
    });
  },
);

describe("personalize on cpu", () => {
  let model: PersonalModel;
  let trainer: OnDeviceTrainer;
  let api: LocalApi;
  beforeAll(async () => {
    model = await loadModel(dir, { device: "cpu", cache: await fsCache(join(cacheDir, "p")) });
    trainer = await OnDeviceTrainer.create(model, dir);
    api = await startApi();
    await publishModel(api, dir);
  });
  afterAll(async () => {
    await trainer?.dispose();
    await model?.dispose();
    await api?.stop();
  });

  const probe = () => model.encodePrompt("My cat Miso sleeps on the");

  it("trains, encodes with src/format, and makes the result the active R without reloading", async () => {
    const [base] = await model.forward([probe()]);
    const events: TrainEvent[] = [];
    const result = await trainer.personalize(TEXTS, {
      steps: 12,
      lr: 0.02,
      warmupSteps: 2,
      heldOut: 0,
      onProgress: (e) => events.push(e),
    });
    expect(events.filter((e) => e.kind === "step")).toHaveLength(12);
    expect(events.at(-1)).toMatchObject({ kind: "stop", reason: "steps" });
    expect(result.losses.at(-1) as number).toBeLessThan((result.losses[0] as number) - 0.5);
    const adapter = decodeAdapter(result.bytes, model.expectations);
    expect(adapter.metadata.source).toBe("client");
    expect(adapter.metadata.steps).toBe("12");
    expect(adapter.dtype).toBe("F16");
    expect(adapter.bytes).toBe(result.bytes.byteLength);
    expect(model.adapterLabel).toBe("trained-on-device");
    const [trained] = await model.forward([probe()]);
    expect(maxAbs(trained as Float32Array, base as Float32Array)).toBeGreaterThan(1e-2);
    // The same bytes set again give the same logits: the model runs exactly the encoded R.
    model.setAdapter(decodeAdapter(result.bytes), "again");
    const [again] = await model.forward([probe()]);
    expect(maxAbs(again as Float32Array, trained as Float32Array)).toBeLessThan(1e-6);
  });

  it("held-out loss drives early stopping and the best R is returned", async () => {
    const tok = model.tokenizer;
    if (tok === undefined) throw new Error("tiny-llama has a tokenizer");
    const rows = packRows(
      [...TEXTS, ...TEXTS.map((t) => t.toUpperCase())].map((t) => tok.encode(t)),
      trainer.step.seq,
      2,
    );
    expect(rows.length).toBeGreaterThan(2);
    const events: TrainEvent[] = [];
    const options = { heldOut: 0.3, seed: 7 };
    const result = await trainRows(trainer.step, rows, new Float32Array(ref.R.length), {
      ...options,
      steps: 40,
      lr: 20, // far too large: the held-out loss rises and training stops
      evalEvery: 2,
      patience: 2,
      onProgress: (e) => events.push(e),
    });
    expect(result.stoppedEarly).toBe(true);
    expect(result.steps).toBeLessThan(40);
    expect(events.at(-1)).toMatchObject({ kind: "stop", reason: "early_stopping" });
    const best = Math.min(...result.heldOutLosses.map((h) => h.loss));
    expect(best).toBeLessThan(result.heldOutLosses.at(-1)?.loss as number);
    // The returned R is the one with the best held-out loss, not the last one.
    const { heldOut } = splitRows(rows, options.heldOut, options.seed);
    expect(Math.abs((await evaluate(trainer.step, heldOut, result.R)) - best)).toBeLessThan(1e-5);
  });

  it("cancellation leaves the previous adapter active", async () => {
    model.setAdapter(null, "before");
    const [before] = await model.forward([probe()]);
    const controller = new AbortController();
    const run = trainer.personalize(TEXTS, {
      steps: 50,
      heldOut: 0,
      signal: controller.signal,
      onProgress: (e) => {
        if (e.kind === "step" && e.step === 2) controller.abort(new Error("user cancelled"));
      },
    });
    await expect(run).rejects.toThrow("user cancelled");
    expect(model.adapterLabel).toBe("before");
    const [after] = await model.forward([probe()]);
    expect(maxAbs(after as Float32Array, before as Float32Array)).toBe(0);
  });

  it("uploads through the API with If-Match; a stale ETag is refused and R stays", async () => {
    const client = model.adapterClient({ api: api.url, token: () => api.token("carol") });
    const first = await trainer.personalize(TEXTS, {
      steps: 3,
      heldOut: 0,
      upload: { client, user: "carol" },
    });
    expect(first.uploaded?.version).toBe(1);
    const fetched = await client.fetchAdapter("carol");
    expect(fetched.adapter.metadata.source).toBe("client");
    expect(Buffer.from(fetched.adapter.R.buffer).equals(Buffer.from(first.adapter.R.buffer))).toBe(
      true,
    );
    const second = await trainer.personalize(TEXTS, {
      steps: 3,
      heldOut: 0,
      seed: 1,
      upload: { client, user: "carol", ifMatch: first.uploaded?.etag },
    });
    expect(second.uploaded?.version).toBe(2);
    model.setAdapter(second.adapter, "second");
    const stale = trainer.personalize(TEXTS, {
      steps: 2,
      heldOut: 0,
      upload: { client, user: "carol", ifMatch: first.uploaded?.etag },
    });
    await expect(stale).rejects.toBeInstanceOf(ConflictError);
    expect(model.adapterLabel).toBe("second");
  });
});
