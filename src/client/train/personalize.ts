// Train the user's R on this device and make it the model's R: nothing but R leaves the device.
import type { Adapter } from "../../format/index.ts";
import { decodeAdapter, encodeAdapter } from "../../format/index.ts";
import type { AdapterClient, UploadResult } from "../adapter/index.ts";
import { ClientError } from "../errors.ts";
import { createRng } from "../generate/prng.ts";
import { eosTokenIds } from "../manifest.ts";
import type { PersonalModel } from "../model.ts";
import { createTrainStep, type TrainStep } from "./step.ts";
import { loadTrainFiles, type TrainInfo } from "./train-files.ts";
import { rowsFromTexts, type TrainOptions, type TrainResult, trainRows } from "./trainer.ts";

/** R's initial standard deviation (docs/contracts.md): training starts from the base model. */
export const R_INIT_STD = 1e-5;

/** N(0, std) values from a seeded generator (Box-Muller). */
export function initR(size: number, seed = 0, std = R_INIT_STD): Float32Array {
  const rng = createRng(seed);
  const out = new Float32Array(size);
  for (let i = 0; i < size; i += 2) {
    const u = Math.max(rng(), Number.MIN_VALUE);
    const v = rng();
    const r = Math.sqrt(-2 * Math.log(u)) * std;
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < size) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

export interface PersonalizeOptions extends TrainOptions {
  /** Where R starts (e.g. the user's current adapter); default N(0, 1e-5). */
  start?: Float32Array;
  /** Upload the result: the API client, the user and the ETag the result replaces (If-Match). */
  upload?: {
    client: AdapterClient;
    user: string;
    ifMatch?: string;
    dtype?: "F16" | "F32" | "BF16";
  };
  /** Storage dtype of the adapter (default F16, 30 KB for SmolLM2). */
  dtype?: "F16" | "F32" | "BF16";
}

export interface PersonalizeResult extends TrainResult {
  adapter: Adapter;
  bytes: Uint8Array;
  uploaded?: UploadResult;
}

/** A model's training step, loaded once and reused for several trainings. */
export class OnDeviceTrainer {
  readonly model: PersonalModel;
  readonly step: TrainStep;
  readonly info: TrainInfo;

  private constructor(model: PersonalModel, step: TrainStep, info: TrainInfo) {
    this.model = model;
    this.step = step;
    this.info = info;
  }

  /** Fetch the step graph the manifest at `location` lists (onnx_train) and create its session. */
  static async create(
    model: PersonalModel,
    location: string,
    init: { fetch?: typeof fetch; signal?: AbortSignal } = {},
  ): Promise<OnDeviceTrainer> {
    if (model.manifest.family !== "decoder") {
      throw new ClientError(
        "wrong_family",
        `model ${model.manifest.id} is an ${model.manifest.family}; on-device training is for decoders`,
      );
    }
    const files = await loadTrainFiles(
      location,
      { id: model.manifest.id, factors: model.manifest.factors.sha256 },
      model.cache,
      init,
    );
    const rDims = model.manifest.io.R.shape as [number, number, number];
    const step = await createTrainStep(model.backend, files, model.cache, {
      id: model.manifest.id,
      rDims,
    });
    return new OnDeviceTrainer(model, step, files.info);
  }

  /**
   * Train on the user's texts, encode the adapter (source=client, steps), upload it when asked
   * (If-Match), then make it the model's R. On abort or failure the model keeps its previous R.
   */
  async personalize(
    texts: readonly string[],
    options: PersonalizeOptions = {},
  ): Promise<PersonalizeResult> {
    const m = this.model;
    const tok = m.tokenizer;
    if (tok === undefined)
      throw new ClientError("no_tokenizer", `model ${m.manifest.id} has no tokenizer`);
    const eos = eosTokenIds(m.manifest)[0];
    const rows = rowsFromTexts(
      (t) => tok.encode(t, { addSpecialTokens: false }),
      texts,
      this.step.seq,
      eos ?? undefined,
      eos ?? 0,
    );
    const [M, r] = m.manifest.io.R.shape as [number, number, number];
    const start = options.start ?? initR(M * r * r, options.seed ?? 0);
    const result = await trainRows(this.step, rows, start, options);
    options.signal?.throwIfAborted();
    const bytes = encodeAdapter(
      {
        ...m.expectations,
        model: m.manifest.id,
        factors: m.manifest.factors.sha256,
        rank: m.manifest.rank,
        modules: m.manifest.modules.length,
        R: result.R,
        metadata: {
          source: "client",
          steps: String(result.steps),
          created: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
        },
      },
      { dtype: options.dtype ?? "F16" },
    );
    const adapter = decodeAdapter(bytes, m.expectations);
    let uploaded: UploadResult | undefined;
    if (options.upload !== undefined) {
      uploaded = await options.upload.client.uploadAdapter(options.upload.user, bytes, {
        ifMatch: options.upload.ifMatch,
      });
    }
    m.setAdapter(adapter, options.upload?.user ?? "trained-on-device");
    return { ...result, adapter, bytes, uploaded };
  }

  async dispose(): Promise<void> {
    await this.step.dispose();
  }
}
