/**
 * Every reason a reader or writer rejects an adapter, in the order the reader checks them
 * (docs/adapter-format.md, "Checks"). A code is stable: callers branch on it, never on the
 * message. A rejection is permanent: the same bytes always fail the same way.
 */
export const ADAPTER_ERROR_CODES = [
  "file_too_small",
  "file_too_large",
  "header_too_large",
  "header_out_of_bounds",
  "header_not_utf8",
  "header_invalid_json",
  "header_not_object",
  "metadata_missing",
  "metadata_not_string",
  "format_unknown",
  "format_version_unknown",
  "metadata_key_unknown",
  "metadata_key_missing",
  "model_invalid",
  "factors_invalid",
  "rank_invalid",
  "modules_invalid",
  "labels_invalid",
  "metadata_value_invalid",
  "tensor_unknown",
  "tensor_missing",
  "head_incomplete",
  "tensor_entry_invalid",
  "dtype_unsupported",
  "dtype_mixed",
  "shape_invalid",
  "shape_mismatch",
  "labels_mismatch",
  "offsets_invalid",
  "offsets_overlap",
  "offsets_gap",
  "offsets_out_of_bounds",
  "trailing_bytes",
  "tensor_size_mismatch",
  "value_not_finite",
  "model_mismatch",
  "factors_mismatch",
  "rank_mismatch",
  "modules_mismatch",
  "hidden_mismatch",
  // Writer only: a finite float32 that rounds to ±Inf in the chosen dtype.
  "value_out_of_range",
] as const;

export type AdapterErrorCode = (typeof ADAPTER_ERROR_CODES)[number];

/** The one error type `src/format` throws. `detail` carries the offending value and the limit. */
export class AdapterFormatError extends Error {
  override readonly name = "AdapterFormatError";
  readonly code: AdapterErrorCode;
  readonly detail?: Record<string, unknown>;

  constructor(code: AdapterErrorCode, message: string, detail?: Record<string, unknown>) {
    super(`${code}: ${message}`);
    this.code = code;
    if (detail !== undefined) this.detail = detail;
  }
}

/** Throws an AdapterFormatError; a helper so checks read as one line each. */
export function fail(
  code: AdapterErrorCode,
  message: string,
  detail?: Record<string, unknown>,
): never {
  throw new AdapterFormatError(code, message, detail);
}
