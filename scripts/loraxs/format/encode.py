"""An adapter to bytes, equal to what `encodeAdapter` writes (src/format/encode.ts)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import safetensors.numpy

from .adapter_types import AdapterHead
from .dtype import DTYPE_BYTES, DTYPES
from .errors import fail
from .header import build_header_json
from .limits import HEADER_PREFIX_BYTES, MAX_ADAPTER_BYTES, MAX_CLASSES, MAX_HEADER_BYTES, MAX_HIDDEN, MAX_MODULES, MAX_RANK
from .metadata import FORMAT, FORMAT_VERSION, OPTIONAL_KEYS, as_count_text, check_count, check_factors, check_labels, check_model, check_optional
from .read_tensor import fail_not_finite
from .show import show


def _as_float32(name: str, x: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A torch tensor or array-like -> contiguous float32 of `shape` (flat input accepted)."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x)
    expected = math.prod(shape)
    if arr.size != expected or (arr.ndim != 1 and tuple(arr.shape) != shape):
        fail(
            "shape_mismatch",
            f"{name} has shape {list(arr.shape)}; expected {list(shape)} ({expected} values)",
            tensor=name,
            value=list(arr.shape),
            expected=list(shape),
        )
    return np.ascontiguousarray(arr, dtype=np.float32).reshape(shape)


def _narrow(name: str, x: np.ndarray, dtype: str) -> np.ndarray:
    """float32 -> stored dtype (round to nearest even), rejecting what the dtype cannot hold."""
    flat = x.reshape(-1)
    if dtype == "F32":
        out = flat
        overflow = np.zeros(flat.shape, dtype=bool)
    elif dtype == "F16":
        with np.errstate(over="ignore"):
            out = flat.astype("<f2")
        overflow = np.isinf(out)
    else:
        u = flat.view(np.uint32)
        bits = ((u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
        out = bits.view(ml_dtypes.bfloat16)
        overflow = (bits & 0x7FFF) == 0x7F80
    nonfinite = ~np.isfinite(flat)
    bad = np.flatnonzero(nonfinite | overflow)
    if bad.size:
        i = int(bad[0])
        v = float(flat[i])
        if nonfinite[i]:
            fail_not_finite(name, i, v, dtype=dtype)
        fail(
            "value_out_of_range",
            f"{name}[{i}] = {v!r} overflows {dtype} (it would be stored as Infinity)",
            tensor=name,
            index=i,
            value=v,
            dtype=dtype,
        )
    return out.reshape(x.shape)


def _check_dim(name: str, value: Any, limit: int) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or not 1 <= int(value) <= limit:
        fail(
            "shape_mismatch",
            f"{name} {value!r} is not an integer in 1..{limit}",
            value=value,
            limit=limit,
        )
    return int(value)


def encode_adapter(
    *,
    model: str,
    factors: str,
    rank: int,
    modules: int,
    R: Any,
    head: Mapping[str, Any] | AdapterHead | None = None,
    metadata: Mapping[str, str] | None = None,
    dtype: str = "F16",
) -> bytes:
    """Encodes an adapter; the bytes equal what `encodeAdapter` (TypeScript) writes.

    `R` is [modules, rank, rank] (or flat), a torch tensor or anything numpy takes; values are
    rounded to float32 first, then to `dtype`. `head` has weight [classes, hidden], bias
    [classes], classes, hidden and optional labels. `metadata` holds only the optional keys
    created, source, steps, note.
    """
    if dtype not in DTYPES:
        fail(
            "dtype_unsupported",
            f"dtype {show(dtype)} is not one of F16, F32, BF16",
            value=dtype,
            allowed=list(DTYPES),
        )
    model = check_model(model)
    factors = check_factors(factors)
    rank = check_count("rank_invalid", "rank", as_count_text(rank), MAX_RANK)
    modules = check_count("modules_invalid", "modules", as_count_text(modules), MAX_MODULES)
    meta: list[tuple[str, str]] = [
        ("format", FORMAT),
        ("format_version", FORMAT_VERSION),
        ("model", model),
        ("factors", factors),
        ("rank", str(rank)),
        ("modules", str(modules)),
    ]
    if isinstance(head, AdapterHead):
        head = vars(head)
    labels = None if head is None else head.get("labels")
    if labels is not None:
        labels = check_labels(labels)
        meta.append(("labels", json.dumps(labels, ensure_ascii=False, separators=(",", ":"))))
    extra = dict(metadata or {})
    unknown = sorted(k for k in extra if k not in OPTIONAL_KEYS)
    if unknown:
        fail(
            "metadata_key_unknown",
            f"metadata keys {', '.join(unknown)} are not allowed; allowed: {', '.join(OPTIONAL_KEYS)}",
            value=unknown,
            allowed=list(OPTIONAL_KEYS),
        )
    for key in OPTIONAL_KEYS:
        if key in extra:
            meta.append((key, check_optional(key, extra[key])))

    tensors: list[tuple[str, np.ndarray]] = [("R", _as_float32("R", R, (modules, rank, rank)))]
    if head is not None:
        classes = _check_dim("head classes", head.get("classes"), MAX_CLASSES)
        hidden = _check_dim("head hidden", head.get("hidden"), MAX_HIDDEN)
        if labels is not None and len(labels) != classes:
            fail(
                "labels_mismatch",
                f"{len(labels)} labels for {classes} classes",
                value=len(labels),
                expected=classes,
            )
        tensors.append(("head.bias", _as_float32("head.bias", head.get("bias"), (classes,))))
        tensors.append(
            ("head.weight", _as_float32("head.weight", head.get("weight"), (classes, hidden)))
        )

    size = DTYPE_BYTES[dtype]
    entries = []
    offset = 0
    for name, x in tensors:
        entries.append(
            {"name": name, "dtype": dtype, "shape": list(x.shape), "begin": offset, "end": offset + x.size * size}
        )
        offset += x.size * size
    header = build_header_json(meta, entries).encode("utf-8")
    if len(header) > MAX_HEADER_BYTES:  # only labels / a note full of quotes and backslashes
        fail(
            "header_too_large",
            f"the header would be {len(header)} bytes; limit {MAX_HEADER_BYTES}",
            value=len(header),
            limit=MAX_HEADER_BYTES,
        )
    total = HEADER_PREFIX_BYTES + len(header) + offset
    if total > MAX_ADAPTER_BYTES:
        fail(
            "file_too_large",
            f"the adapter would be {total} bytes; limit {MAX_ADAPTER_BYTES}",
            value=total,
            limit=MAX_ADAPTER_BYTES,
        )
    stored = {name: _narrow(name, x, dtype) for name, x in tensors}

    # The official writer lays out the data; its header names metadata keys in hash order, so
    # the header is rewritten in the fixed order (same tensors, same offsets).
    raw = safetensors.numpy.save(stored, metadata=dict(meta))
    n = int.from_bytes(raw[:8], "little")
    theirs = json.loads(raw[8 : 8 + n])
    for t in entries:
        got = theirs[t["name"]]
        if got != {"dtype": dtype, "shape": t["shape"], "data_offsets": [t["begin"], t["end"]]}:
            raise AssertionError(f"safetensors laid out {t['name']} as {got}, expected {t}")
    return len(header).to_bytes(8, "little") + header + raw[8 + n :]


def save_adapter(path: str | Path, **kwargs: Any) -> bytes:
    """encode_adapter(**kwargs) written to `path`; returns the bytes."""
    data = encode_adapter(**kwargs)
    Path(path).write_bytes(data)
    return data
