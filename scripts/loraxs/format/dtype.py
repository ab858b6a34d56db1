"""Stored dtypes (src/format/dtype.ts)."""

from __future__ import annotations


DTYPES = ("F16", "F32", "BF16")
DTYPE_BYTES = {"F16": 2, "F32": 4, "BF16": 2}
