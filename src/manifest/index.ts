// The model manifest (docs/manifest.md): schema, parser and the adapter expectations it implies.
// Imports zod and src/format only.

export { expectationsFor } from "./expectations.ts";
export {
  ManifestError,
  type ManifestIssue,
  type ManifestIssueCode,
  parseManifest,
} from "./parse.ts";
export {
  FILE_ROLES,
  MANIFEST_SCHEMA_VERSION,
  type Manifest,
  manifestSchema,
  TRAIN_INPUTS,
  TRAIN_OUTPUTS,
} from "./schema.ts";
