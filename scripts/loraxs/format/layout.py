"""The tensors tile the data exactly (src/format/layout.ts)."""

from __future__ import annotations

import math

from .dtype import DTYPE_BYTES
from .errors import fail


def check_layout(entries: list[dict], data_length: int) -> None:
    at = 0
    prev = "the start of the data"
    for t in sorted(entries, key=lambda t: (t["begin"], t["end"])):
        if t["begin"] < at:
            fail(
                "offsets_overlap",
                f"{t['name']} starts at {t['begin']}, inside {prev} (ends at {at})",
                tensor=t["name"],
                value=t["begin"],
                limit=at,
            )
        if t["begin"] > at:
            fail(
                "offsets_gap",
                f"{t['name']} starts at {t['begin']}, leaving a gap after {prev} (ends at {at})",
                tensor=t["name"],
                value=t["begin"],
                expected=at,
            )
        at = t["end"]
        prev = t["name"]
    if at > data_length:
        fail(
            "offsets_out_of_bounds",
            f"tensor data ends at {at}, past the {data_length} bytes after the header",
            value=at,
            limit=data_length,
        )
    if at < data_length:
        fail(
            "trailing_bytes",
            f"tensor data ends at {at} but {data_length} bytes follow the header",
            value=data_length - at,
            expected=at,
        )
    for t in entries:
        expected = math.prod(t["shape"]) * DTYPE_BYTES[t["dtype"]]
        if t["end"] - t["begin"] != expected:
            fail(
                "tensor_size_mismatch",
                f"{t['name']} spans {t['end'] - t['begin']} bytes; shape {t['shape']} of "
                f"{t['dtype']} needs {expected}",
                tensor=t["name"],
                value=t["end"] - t["begin"],
                expected=expected,
            )
