// One training step on the device: (input_ids, attention_mask, labels, R) -> (loss, dL/dR).
import {
  type Backend,
  cpuTensor,
  createSession,
  type InferenceSession,
  type Tensor,
} from "../backend/index.ts";
import type { BlobCache } from "../cache/index.ts";
import { ClientError, ModelFileError } from "../errors.ts";
import { fileKey } from "../loader/index.ts";
import type { Row } from "./data.ts";
import type { TrainFiles } from "./train-files.ts";

export interface StepResult {
  loss: number;
  grad: Float32Array;
  /** Tokens whose prediction counted in this batch (the loss is their mean). */
  tokens: number;
}

export class TrainStep {
  readonly batch: number;
  readonly seq: number;
  readonly rDims: readonly [number, number, number];
  private readonly backend: Backend;
  private readonly session: InferenceSession;

  constructor(
    backend: Backend,
    session: InferenceSession,
    shape: { batch: number; seq: number },
    rDims: readonly [number, number, number],
  ) {
    this.backend = backend;
    this.session = session;
    this.batch = shape.batch;
    this.seq = shape.seq;
    this.rDims = rDims;
  }

  /** Run the step graph on `rows` (exactly `batch` rows of `seq` tokens) at `R`. */
  async run(rows: readonly Row[], R: Float32Array): Promise<StepResult> {
    const { batch, seq } = this;
    if (rows.length !== batch) {
      throw new ClientError(
        "ragged_batch",
        `got ${rows.length} rows; the step graph takes ${batch}`,
      );
    }
    const ids = new BigInt64Array(batch * seq);
    const mask = new BigInt64Array(batch * seq);
    const labels = new BigInt64Array(batch * seq);
    let tokens = 0;
    rows.forEach((row, r) => {
      if (row.ids.length !== seq) {
        throw new ClientError(
          "ragged_batch",
          `row ${r} has ${row.ids.length} tokens; the step graph takes ${seq}`,
        );
      }
      for (let i = 0; i < seq; i++) {
        ids[r * seq + i] = BigInt(row.ids[i] as number);
        mask[r * seq + i] = BigInt(row.mask[i] as number);
        labels[r * seq + i] = BigInt(row.labels[i] as number);
      }
      tokens += row.tokens;
    });
    const dims = [batch, seq];
    const feeds: Record<string, Tensor> = {
      input_ids: cpuTensor(this.backend, "int64", ids, dims),
      attention_mask: cpuTensor(this.backend, "int64", mask, dims),
      labels: cpuTensor(this.backend, "int64", labels, dims),
      R: cpuTensor(this.backend, "float32", R, this.rDims),
    };
    const out = (await this.session.run(feeds)) as Record<string, Tensor>;
    const loss = out.loss;
    const grad = out.grad_R;
    if (loss === undefined || grad === undefined) {
      throw new ClientError(
        "bad_outputs",
        `step graph outputs [${Object.keys(out).join(", ")}]; expected loss, grad_R`,
      );
    }
    const lossValue = ((await loss.getData()) as Float32Array)[0] as number;
    const g = new Float32Array((await grad.getData()) as Float32Array);
    loss.dispose();
    grad.dispose();
    return { loss: lossValue, grad: g, tokens };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/**
 * The step session on the model's backend. onnxruntime-node reads the graph by path with the
 * shared weights file beside it; onnxruntime-web gets the weights' bytes as external data.
 */
export async function createTrainStep(
  backend: Backend,
  files: TrainFiles,
  cache: BlobCache,
  model: { id: string; rDims: readonly [number, number, number] },
): Promise<TrainStep> {
  const dataName = files.info.onnx_train.data_file;
  let externalData: { path: string; data: Uint8Array }[] | undefined;
  const byPath = backend.runtime === "onnxruntime-node" && files.graph.path !== undefined;
  if (dataName !== null && !byPath) {
    const data = (await cache.get(fileKey(model.id, dataName)))?.bytes;
    if (data === undefined) {
      throw new ModelFileError(
        "not_cached",
        dataName,
        "load the model first: the step graph reads its weights",
      );
    }
    externalData = [{ path: dataName, data }];
  }
  let graphBytes = files.graph.bytes;
  if (graphBytes === undefined && !byPath && files.graph.path !== undefined) {
    const { readFile } = await import("node:fs/promises");
    graphBytes = new Uint8Array(await readFile(files.graph.path));
  }
  const { session, backend: stepBackend } = await createSession(backend, {
    path: byPath ? files.graph.path : undefined,
    bytes: byPath ? undefined : graphBytes,
    externalData,
  });
  return new TrainStep(stepBackend, session, files.info.onnx_train.shapes, model.rDims);
}
