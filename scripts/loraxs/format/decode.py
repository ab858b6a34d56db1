"""Bytes to a validated Adapter (src/format/decode.ts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import safetensors

from .adapter_types import Adapter, AdapterHead
from .check_expectations import check_expectations
from .errors import AdapterFormatError
from .layout import check_layout
from .read_entries import read_entries
from .read_header import read_header
from .read_metadata import read_metadata
from .read_tensor import check_finite, widen


def decode_adapter(data: bytes | bytearray | memoryview, expect: Any = None) -> Adapter:
    """Decodes and fully validates an adapter; raises AdapterFormatError (nothing else) with the
    first failed check's code. `expect` is an AdapterExpectations or a dict with the same keys."""
    data = bytes(data)
    header, data_start = read_header(data)
    meta = read_metadata(header)
    entries, dtype = read_entries(header, meta)
    check_layout(entries, len(data) - data_start)
    try:
        views = dict(safetensors.deserialize(data))
    except Exception as e:  # the checks above are a superset of the library's
        raise AdapterFormatError(
            "header_invalid_json", f"unexpected failure: safetensors rejected the file: {e}"
        ) from None
    tensors: dict[str, np.ndarray] = {}
    for t in entries:
        values = widen(views[t["name"]]["data"], dtype)
        check_finite(t["name"], values)
        tensors[t["name"]] = values.reshape(t["shape"])
    head = None
    if "head.weight" in tensors:
        c, h = tensors["head.weight"].shape
        head = AdapterHead(
            weight=tensors["head.weight"],
            bias=tensors["head.bias"],
            classes=int(c),
            hidden=int(h),
            labels=meta["labels"],
        )
    adapter = Adapter(
        model=meta["model"],
        factors=meta["factors"],
        rank=meta["rank"],
        modules=meta["modules"],
        dtype=dtype,
        R=tensors["R"],
        head=head,
        metadata=meta["metadata"],
        bytes=len(data),
    )
    check_expectations(adapter, expect)
    return adapter


def load_adapter(path: str | Path, expect: Any = None) -> Adapter:
    return decode_adapter(Path(path).read_bytes(), expect)
