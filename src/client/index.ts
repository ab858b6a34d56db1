// loraxs-edge client: run a user's personal model on their own device.

export { ManifestError } from "../manifest/index.ts";
export {
  AdapterClient,
  type AdapterClientOptions,
  type FetchedAdapter,
  type UploadResult,
} from "./adapter/index.ts";
export {
  type AdapterVersion,
  EdgeApi,
  type EdgeApiOptions,
  type Job,
  type StoredAdapter,
} from "./api/index.ts";
export {
  type Backend,
  type BackendOptions,
  type Device,
  SUPPORTED_DEVICES,
  selectBackend,
} from "./backend/index.ts";
export {
  type BlobCache,
  cacheStorageCache,
  defaultCache,
  fsCache,
  memoryCache,
} from "./cache/index.ts";
export * from "./errors.ts";
export type { ChatMessage } from "./generate/chat-template.ts";
export { chatTemplate } from "./generate/chat-template.ts";
export { DEFAULT_MAX_TOKENS, type DecodeOptions } from "./generate/decoder.ts";
export { createRng } from "./generate/prng.ts";
export { argmax, createSampler, type SamplingOptions } from "./generate/sampling.ts";
export { TextStream } from "./generate/stream-text.ts";
export { chooseGraph, type GraphChoice, graphFileFilter } from "./graph-choice.ts";
export { type Progress, SKIPPED_ROLES, sha256Digest } from "./loader/index.ts";
export type { ClientManifest, ManifestFile, OnnxTrain } from "./manifest.ts";
export {
  type GenerateChunk,
  type GenerateOptions,
  type LoadModelOptions,
  loadModel,
  type ModelTimings,
  PersonalModel,
  type Prompt,
} from "./model.ts";
export {
  AdamW,
  chooseStepShape,
  estimateStepBytes,
  initR,
  OnDeviceTrainer,
  type PersonalizeOptions,
  type PersonalizeResult,
  type TrainEvent,
  type TrainOptions,
  type TrainResult,
  trainRows,
} from "./train/index.ts";
