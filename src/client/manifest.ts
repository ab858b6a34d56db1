// The manifest as the client reads it: the zod schema of src/manifest is the one source
// (docs/manifest.md); these are its types under the names the client has always exported.
import { type Manifest, parseManifest } from "../manifest/index.ts";

type DecoderConfig = Extract<Manifest, { family: "decoder" }>["config"];
type EncoderConfig = Extract<Manifest, { family: "encoder" }>["config"];
/** `config` as the client reads it: the fields both families have, the others optional. */
export type ClientConfig = Pick<
  DecoderConfig & EncoderConfig,
  "hidden_size" | "num_layers" | "vocab_size"
> &
  Partial<DecoderConfig> &
  Partial<EncoderConfig>;
/** One graph variant (docs/manifest.md, `graphs`); `devices` read as plain device names. */
export type GraphVariant = Omit<NonNullable<Manifest["graphs"]>[number], "devices"> & {
  devices: string[];
};
/**
 * A parsed manifest (either family) with `config` readable without narrowing the family and
 * graph variants whose `devices` any device name may be looked up in.
 */
export type ClientManifest = Manifest extends infer M
  ? M extends Manifest
    ? Omit<M, "config" | "graphs"> & { config: ClientConfig; graphs?: GraphVariant[] }
    : never
  : never;
export type ManifestFile = Manifest["files"][number];
export type FileRole = ManifestFile["role"];
/** The training-step graph (decoders prepared with --train-step; docs/on-device-training.md). */
export type OnnxTrain = NonNullable<Manifest["onnx_train"]>;

/** The decoder's end-of-sequence token ids (none for encoders or when the manifest has none). */
export function eosTokenIds(manifest: ClientManifest): number[] {
  const eos = manifest.family === "decoder" ? manifest.config.eos_token_id : undefined;
  return eos === null || eos === undefined ? [] : [eos];
}

/** Validates manifest.json against the schema; throws ManifestError naming each bad path. */
export function checkManifest(json: unknown): ClientManifest {
  return parseManifest(json);
}
