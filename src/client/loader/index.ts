export type { Progress } from "./download.ts";
export {
  defaultInclude,
  fileKey,
  type LoadedFile,
  type LoadedModelFiles,
  type LoadOptions,
  type LoadTimings,
  loadModelFiles,
  SKIPPED_ROLES,
} from "./load-files.ts";
export { sha256Digest } from "./sha256.ts";
export { type ModelSource, modelSource } from "./source.ts";
