"""Every reason a reader or writer rejects an adapter, and the one error type (src/format/errors.ts)."""

from __future__ import annotations

from typing import Any


# In the order the reader checks them.
ADAPTER_ERROR_CODES = (
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
    "value_out_of_range",
)


class AdapterFormatError(ValueError):
    """The one error the adapter code raises; `code` is stable, the message names the value."""

    def __init__(self, code: str, message: str, detail: dict | None = None) -> None:
        assert code in ADAPTER_ERROR_CODES, code
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = detail or {}


def fail(code: str, message: str, **detail: Any):
    raise AdapterFormatError(code, message, detail)
