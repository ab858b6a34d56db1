"""The tensor entries: names, dtype, shapes, offsets (src/format/read-entries.ts)."""

from __future__ import annotations

from typing import Any

from .dtype import DTYPES
from .errors import fail
from .header import TENSOR_ORDER
from .limits import MAX_CLASSES, MAX_HIDDEN, MAX_SAFE_INTEGER
from .show import show


def _is_count(v: Any) -> bool:
    return type(v) is int and 0 <= v <= MAX_SAFE_INTEGER



def read_entries(header: dict, meta: dict) -> tuple[list[dict], str]:
    names = [k for k in header if k != "__metadata__"]
    unknown = sorted(k for k in names if k not in TENSOR_ORDER)
    if unknown:
        fail(
            "tensor_unknown",
            f"tensors {', '.join(show(u) for u in unknown)} are not R, head.weight, head.bias",
            value=unknown,
            allowed=list(TENSOR_ORDER),
        )
    if "R" not in names:
        fail("tensor_missing", "the file has no tensor R")
    has_weight = "head.weight" in names
    if has_weight != ("head.bias" in names):
        only = "head.weight" if has_weight else "head.bias"
        fail(
            "head_incomplete",
            f"a head needs both head.weight and head.bias; only {only} is present",
        )
    present = [n for n in TENSOR_ORDER if n in names]
    raw = []
    for name in present:
        e = header[name]
        if not isinstance(e, dict) or sorted(e) != ["data_offsets", "dtype", "shape"]:
            fail(
                "tensor_entry_invalid",
                f"{name} is {show(e)}; expected an object with exactly dtype, shape, data_offsets",
                tensor=name,
            )
        raw.append((name, e))
    for name, e in raw:
        if not (isinstance(e["dtype"], str) and e["dtype"] in DTYPES):
            fail(
                "dtype_unsupported",
                f"{name} dtype {show(e['dtype'])} is not one of {', '.join(DTYPES)}",
                tensor=name,
                value=e["dtype"],
                allowed=list(DTYPES),
            )
    dtype = raw[0][1]["dtype"]
    for name, e in raw:
        if e["dtype"] != dtype:
            fail(
                "dtype_mixed",
                f"{name} is {e['dtype']} but R is {dtype}; all tensors share one dtype",
                tensor=name,
                value=e["dtype"],
                expected=dtype,
            )
    for name, e in raw:
        shape = e["shape"]
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            fail(
                "shape_invalid",
                f"{name} shape {show(shape)} is not a list of non-negative integers",
                tensor=name,
                value=shape,
            )
    shapes = {name: e["shape"] for name, e in raw}
    r = shapes["R"]
    r_expected = [meta["modules"], meta["rank"], meta["rank"]]
    if r != r_expected:
        fail(
            "shape_mismatch",
            f"R shape {r} is not [modules, rank, rank] = {r_expected}",
            tensor="R",
            value=r,
            expected=r_expected,
        )
    classes = 0
    if has_weight:
        w = shapes["head.weight"]
        b = shapes["head.bias"]
        c = w[0] if len(w) > 0 else 0
        h = w[1] if len(w) > 1 else 0
        if len(w) != 2 or not 1 <= c <= MAX_CLASSES or not 1 <= h <= MAX_HIDDEN:
            fail(
                "shape_mismatch",
                f"head.weight shape {w} is not [classes, hidden] with classes in 1..{MAX_CLASSES} "
                f"and hidden in 1..{MAX_HIDDEN}",
                tensor="head.weight",
                value=w,
                limit=[MAX_CLASSES, MAX_HIDDEN],
            )
        if b != [c]:
            fail(
                "shape_mismatch",
                f"head.bias shape {b} is not [classes] = [{c}]",
                tensor="head.bias",
                value=b,
                expected=[c],
            )
        classes = c
    labels = meta["labels"]
    if labels is not None and len(labels) != classes:
        fail(
            "labels_mismatch",
            f"{len(labels)} labels for a head of {classes} classes"
            if has_weight
            else f"{len(labels)} labels but the file has no head",
            value=len(labels),
            expected=classes,
        )
    entries = []
    for name, e in raw:
        o = e["data_offsets"]
        if (
            not isinstance(o, list)
            or len(o) != 2
            or not _is_count(o[0])
            or not _is_count(o[1])
            or o[0] > o[1]
        ):
            fail(
                "offsets_invalid",
                f"{name} data_offsets {show(o)} is not [begin, end] of integers with "
                "0 <= begin <= end",
                tensor=name,
                value=o,
            )
        entries.append({"name": name, "dtype": dtype, "shape": e["shape"], "begin": o[0], "end": o[1]})
    return entries, dtype
