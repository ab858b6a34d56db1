// Browser side of the WebGPU check of the training step: the real client bundle in Chromium,
// driven through `window.loraxsTrain` (see webgpu.test.ts).
import { loadModel, memoryCache } from "../../../src/client/index.ts";
import { OnDeviceTrainer, type Row } from "../../../src/client/train/index.ts";
import type { TrainReference } from "./model.ts";

type Ref = Pick<TrainReference, "input_ids" | "attention_mask" | "labels" | "R" | "loss" | "grad">;

const api = {
  /** Run the step graph on the reference batch; returns the errors against PyTorch and timings. */
  async step(device: "webgpu" | "wasm", modelUrl: string) {
    const ref = (await (await fetch(`${modelUrl}/train-reference.json`)).json()) as Ref;
    const location = `${modelUrl}/manifest.json`;
    const model = await loadModel(location, { device, wasmPaths: "/ort/", cache: memoryCache() });
    const trainer = await OnDeviceTrainer.create(model, location);
    const rows: Row[] = ref.input_ids.map((ids, i) => ({
      ids,
      mask: ref.attention_mask[i] as number[],
      labels: ref.labels[i] as number[],
      tokens: 1,
    }));
    const t0 = performance.now();
    const r = await trainer.step.run(rows, new Float32Array(ref.R));
    const firstMs = performance.now() - t0;
    const t1 = performance.now();
    await trainer.step.run(rows, new Float32Array(ref.R));
    const stepMs = performance.now() - t1;
    let maxErr = 0;
    let maxRef = 0;
    for (let i = 0; i < ref.grad.length; i++) {
      maxErr = Math.max(maxErr, Math.abs((r.grad[i] as number) - (ref.grad[i] as number)));
      maxRef = Math.max(maxRef, Math.abs(ref.grad[i] as number));
    }
    await trainer.dispose();
    await model.dispose();
    return {
      backend: model.backend.executionProvider,
      lossRelError: Math.abs(r.loss - ref.loss) / ref.loss,
      gradRelError: maxErr / maxRef,
      firstMs,
      stepMs,
    };
  },
};

(window as unknown as { loraxsTrain: typeof api }).loraxsTrain = api;
