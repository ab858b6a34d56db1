// The adapter file contract (docs/adapter-format.md). Imports nothing outside this folder:
// it runs in Workers, browsers and Node.

export { checkExpectations } from "./check-expectations.ts";
export { decodeAdapter } from "./decode.ts";
export { sha256Digest, sha256Hex } from "./digest.ts";
export { DEFAULT_DTYPE, DTYPE_BYTES, DTYPES, type Dtype, isDtype } from "./dtype.ts";
export { encodeAdapter } from "./encode.ts";
export { ADAPTER_ERROR_CODES, type AdapterErrorCode, AdapterFormatError } from "./errors.ts";
export {
  bf16BitsToF32Bits,
  f16BitsToF32Bits,
  f32ArrayToF16,
  f32BitsToBf16,
  f32BitsToF16,
  fromBf16,
  fromF16,
  toBf16,
  toF16,
} from "./float16.ts";
export { TENSOR_ORDER } from "./header.ts";
export * from "./limits.ts";
export { FORMAT, FORMAT_VERSION, METADATA_KEYS, OPTIONAL_KEYS, SOURCES } from "./metadata.ts";
export type {
  Adapter,
  AdapterExpectations,
  AdapterHead,
  AdapterInput,
  EncodeOptions,
} from "./types.ts";
export { type AdapterValidation, validateAdapterBytes } from "./validate.ts";
