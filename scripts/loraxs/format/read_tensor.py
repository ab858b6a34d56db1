"""Stored values widened to float32, finite only (src/format/read-tensor.ts)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import fail


def widen(raw: bytes | bytearray, dtype: str) -> np.ndarray:
    """Little-endian F16 / F32 / BF16 bytes -> float32 (exact)."""
    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32)


def float_text(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def fail_not_finite(name: str, i: int, v: float, **detail: Any):
    """value_not_finite for `name`[i] (the reader's check; the writer adds the dtype)."""
    fail(
        "value_not_finite",
        f"{name}[{i}] is {float_text(v)}; adapters hold finite values only",
        tensor=name,
        index=i,
        value=float_text(v),
        **detail,
    )


def check_finite(name: str, values: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        fail_not_finite(name, i, float(values[i]))
