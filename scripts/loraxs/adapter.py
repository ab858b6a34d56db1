"""The adapter file (docs/adapter-format.md), Python side.

Mirrors src/format: the same checks in the same order with the same error codes, and a writer
whose output is byte for byte what `encodeAdapter` writes. Data goes through the official
`safetensors` library (`safetensors.numpy.save` writes it, `safetensors.deserialize` reads it);
the header is validated here first so the library's own errors never reach callers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import safetensors
import safetensors.numpy

from loraxs.safetensors_header import (
    JsonSyntaxError,
    build_header_json,
    parse_json,
)

# ---------------------------------------------------------------- limits (src/format/limits.ts)
HEADER_PREFIX_BYTES = 8  # little-endian u64 header length
MAX_HEADER_BYTES = 64 * 1024  # ordinary headers stay under 20 KiB; bounds the JSON parse
MAX_ADAPTER_BYTES = 25 * 1024 * 1024  # Workers KV's per-value limit; one KV read serves an adapter
MAX_RANK = 256  # LoRA-XS uses r <= 64; past 256 an r x r matrix is no longer "extra small"
MAX_MODULES = 2048  # a 405B Llama has 126 layers x 7 linear modules = 882
MAX_CLASSES = 256  # classes of an encoder head (labels are spelled out in the header)
MAX_HIDDEN = 16384  # widest public models
MAX_LABEL_BYTES = 64
MAX_NOTE_BYTES = 1024
MAX_MODEL_ID_BYTES = 64
MAX_SAFE_INTEGER = 2**53 - 1

FORMAT = "loraxs"
FORMAT_VERSION = "1"
DTYPES = ("F16", "F32", "BF16")
DTYPE_BYTES = {"F16": 2, "F32": 4, "BF16": 2}
REQUIRED_KEYS = ("format", "format_version", "model", "factors", "rank", "modules")
OPTIONAL_KEYS = ("created", "source", "steps", "note")
METADATA_KEYS = (*REQUIRED_KEYS, "labels", *OPTIONAL_KEYS)
SOURCES = ("worker", "client", "import")
TENSOR_ORDER = ("R", "head.bias", "head.weight")  # file order of the official writer

# Every code, in the order the reader checks (src/format/errors.ts).
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

_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_POSITIVE_INTEGER = re.compile(r"[1-9][0-9]{0,15}")
_NON_NEGATIVE_INTEGER = re.compile(r"0|[1-9][0-9]{0,15}")
_CREATED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class AdapterFormatError(ValueError):
    """The one error the adapter code raises; `code` is stable, the message names the value."""

    def __init__(self, code: str, message: str, detail: dict | None = None) -> None:
        assert code in ADAPTER_ERROR_CODES, code
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = detail or {}


def _fail(code: str, message: str, **detail: Any):
    raise AdapterFormatError(code, message, detail)


def _show(v: Any) -> str:
    try:
        s = json.dumps(v, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


# ---------------------------------------------------------------- types


@dataclass
class AdapterHead:
    weight: np.ndarray  # [classes, hidden] float32
    bias: np.ndarray  # [classes] float32
    classes: int
    hidden: int
    labels: list[str] | None = None


@dataclass
class Adapter:
    model: str
    factors: str
    rank: int
    modules: int
    dtype: str
    R: np.ndarray  # [modules, rank, rank] float32
    head: AdapterHead | None
    metadata: dict[str, str] = field(default_factory=dict)
    bytes: int = 0


@dataclass
class AdapterExpectations:
    model: str | None = None
    factors: str | None = None
    rank: int | None = None
    modules: int | None = None
    hidden: int | None = None


# ---------------------------------------------------------------- metadata rules (metadata.ts)


def _utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def check_model(model: Any) -> str:
    if (
        not isinstance(model, str)
        or not _MODEL_ID.fullmatch(model)
        or len(model) > MAX_MODEL_ID_BYTES
    ):
        _fail(
            "model_invalid",
            f"model {_show(model)} is not a model id (lowercase letters, digits, '.', '_', '-'; "
            f"at most {MAX_MODEL_ID_BYTES} characters)",
            value=model,
            limit=MAX_MODEL_ID_BYTES,
        )
    return model


def check_factors(factors: Any) -> str:
    if not isinstance(factors, str) or not _DIGEST.fullmatch(factors):
        _fail(
            "factors_invalid",
            f'factors {_show(factors)} is not "sha256:" followed by 64 lowercase hex digits',
            value=factors,
        )
    return factors


def _check_count(code: str, key: str, value: Any, limit: int) -> int:
    n = int(value) if isinstance(value, str) and _POSITIVE_INTEGER.fullmatch(value) else 0
    if not 1 <= n <= limit:
        _fail(
            code,
            f"{key} {_show(value)} is not a positive integer written in decimal without leading "
            f"zeros, at most {limit}",
            value=value,
            limit=limit,
        )
    return n


def _as_count_text(v: Any) -> Any:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v)) if abs(int(v)) <= MAX_SAFE_INTEGER else v
    return v


def check_labels(labels: Any) -> list[str]:
    def bad(why: str):
        _fail("labels_invalid", f"labels {why}", value=labels, limit=MAX_CLASSES)

    if not isinstance(labels, (list, tuple)):
        bad("must be an array of strings")
    if not 1 <= len(labels) <= MAX_CLASSES:
        bad(f"has {len(labels)} entries; allowed 1..{MAX_CLASSES}")
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            bad(f"[{i}] is not a string")
        if len(label) == 0 or _CONTROL.search(label) or _SURROGATE.search(label):
            bad(f"[{i}] {_show(label)} is empty or has a control character or lone surrogate")
        if _utf8_len(label) > MAX_LABEL_BYTES:
            bad(f"[{i}] is {_utf8_len(label)} UTF-8 bytes; limit {MAX_LABEL_BYTES}")
        if label in seen:
            bad(f"[{i}] {_show(label)} repeats an earlier label")
        seen.add(label)
    return list(labels)


def _parse_labels_text(text: str) -> list[str]:
    try:
        parsed = json.loads(text, parse_constant=lambda name: float("nan"))
    except (ValueError, RecursionError):
        _fail("labels_invalid", f"labels {_show(text[:80])} is not JSON", value=text)
    return check_labels(parsed)


def check_optional(key: str, value: Any) -> str:
    def bad(allowed: str):
        _fail(
            "metadata_value_invalid",
            f"{key} {_show(value)} is invalid; {allowed}",
            key=key,
            value=value,
            allowed=allowed,
        )

    if not isinstance(value, str):
        bad("expected a string")
    if key == "created" and not _CREATED.fullmatch(value):
        bad("expected UTC ISO 8601 like 2026-11-28T17:00:00Z")
    if key == "source" and value not in SOURCES:
        bad(f"expected one of {', '.join(SOURCES)}")
    if key == "steps" and not _NON_NEGATIVE_INTEGER.fullmatch(value):
        bad("expected a non-negative integer, at most 16 digits")
    if key == "note" and (_SURROGATE.search(value) or _utf8_len(value) > MAX_NOTE_BYTES):
        bad(f"expected at most {MAX_NOTE_BYTES} UTF-8 bytes and no lone surrogate")
    return value


# ---------------------------------------------------------------- reader


def _is_count(v: Any) -> bool:
    return type(v) is int and 0 <= v <= MAX_SAFE_INTEGER


def _read_header(data: bytes) -> tuple[dict, int]:
    n = len(data)
    if n < HEADER_PREFIX_BYTES:
        _fail("file_too_small", f"file is {n} bytes; a header length needs 8", value=n, limit=8)
    if n > MAX_ADAPTER_BYTES:
        _fail(
            "file_too_large",
            f"file is {n} bytes; limit {MAX_ADAPTER_BYTES}",
            value=n,
            limit=MAX_ADAPTER_BYTES,
        )
    length = int.from_bytes(data[:8], "little")
    if length > MAX_HEADER_BYTES:
        _fail(
            "header_too_large",
            f"header length {length} is over the limit {MAX_HEADER_BYTES}",
            value=length,
            limit=MAX_HEADER_BYTES,
        )
    if HEADER_PREFIX_BYTES + length > n:
        _fail(
            "header_out_of_bounds",
            f"header length {length} runs past the end of the {n}-byte file",
            value=length,
            limit=n - HEADER_PREFIX_BYTES,
        )
    try:
        text = bytes(data[8 : 8 + length]).decode("utf-8")
    except UnicodeDecodeError:
        _fail("header_not_utf8", "header is not valid UTF-8")
    try:
        header = parse_json(text)
    except JsonSyntaxError as e:
        _fail("header_invalid_json", f"header is not valid JSON: {e}")
    if not isinstance(header, dict):
        _fail("header_not_object", f"header is {_show(header)}, not a JSON object", value=header)
    return header, HEADER_PREFIX_BYTES + length


def _read_metadata(header: dict) -> dict:
    raw = header.get("__metadata__")
    if not isinstance(raw, dict):
        _fail(
            "metadata_missing",
            f"__metadata__ is {_show('absent' if raw is None else raw)}, not an object of strings",
        )
    metadata: dict[str, str] = {}
    for key in sorted(raw):
        v = raw[key]
        if not isinstance(v, str):
            _fail(
                "metadata_not_string",
                f"__metadata__.{key} is {_show(v)}, not a string",
                key=key,
                value=v,
            )
        metadata[key] = v
    if metadata.get("format") != FORMAT:
        _fail(
            "format_unknown",
            f'format {_show(metadata.get("format"))} is not "{FORMAT}"',
            value=metadata.get("format"),
            allowed=[FORMAT],
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        _fail(
            "format_version_unknown",
            f'format_version {_show(metadata.get("format_version"))} is not "{FORMAT_VERSION}"',
            value=metadata.get("format_version"),
            allowed=[FORMAT_VERSION],
        )
    unknown = [k for k in metadata if k not in METADATA_KEYS]
    if unknown:
        _fail(
            "metadata_key_unknown",
            f"metadata keys {', '.join(unknown)} are not part of format_version 1; "
            f"allowed: {', '.join(METADATA_KEYS)}",
            value=unknown,
            allowed=list(METADATA_KEYS),
        )
    for key in REQUIRED_KEYS:
        if key not in metadata:
            _fail("metadata_key_missing", f'metadata key "{key}" is missing', key=key)
    meta = {
        "metadata": metadata,
        "model": check_model(metadata["model"]),
        "factors": check_factors(metadata["factors"]),
        "rank": _check_count("rank_invalid", "rank", metadata["rank"], MAX_RANK),
        "modules": _check_count("modules_invalid", "modules", metadata["modules"], MAX_MODULES),
        "labels": None,
    }
    if "labels" in metadata:
        meta["labels"] = _parse_labels_text(metadata["labels"])
    for key in OPTIONAL_KEYS:
        if key in metadata:
            check_optional(key, metadata[key])
    return meta


def _read_entries(header: dict, meta: dict) -> tuple[list[dict], str]:
    names = [k for k in header if k != "__metadata__"]
    unknown = sorted(k for k in names if k not in TENSOR_ORDER)
    if unknown:
        _fail(
            "tensor_unknown",
            f"tensors {', '.join(_show(u) for u in unknown)} are not R, head.weight, head.bias",
            value=unknown,
            allowed=list(TENSOR_ORDER),
        )
    if "R" not in names:
        _fail("tensor_missing", "the file has no tensor R")
    has_weight = "head.weight" in names
    if has_weight != ("head.bias" in names):
        only = "head.weight" if has_weight else "head.bias"
        _fail(
            "head_incomplete",
            f"a head needs both head.weight and head.bias; only {only} is present",
        )
    present = [n for n in TENSOR_ORDER if n in names]
    raw = []
    for name in present:
        e = header[name]
        if not isinstance(e, dict) or sorted(e) != ["data_offsets", "dtype", "shape"]:
            _fail(
                "tensor_entry_invalid",
                f"{name} is {_show(e)}; expected an object with exactly dtype, shape, data_offsets",
                tensor=name,
            )
        raw.append((name, e))
    for name, e in raw:
        if not (isinstance(e["dtype"], str) and e["dtype"] in DTYPES):
            _fail(
                "dtype_unsupported",
                f"{name} dtype {_show(e['dtype'])} is not one of {', '.join(DTYPES)}",
                tensor=name,
                value=e["dtype"],
                allowed=list(DTYPES),
            )
    dtype = raw[0][1]["dtype"]
    for name, e in raw:
        if e["dtype"] != dtype:
            _fail(
                "dtype_mixed",
                f"{name} is {e['dtype']} but R is {dtype}; all tensors share one dtype",
                tensor=name,
                value=e["dtype"],
                expected=dtype,
            )
    for name, e in raw:
        shape = e["shape"]
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            _fail(
                "shape_invalid",
                f"{name} shape {_show(shape)} is not a list of non-negative integers",
                tensor=name,
                value=shape,
            )
    shapes = {name: e["shape"] for name, e in raw}
    r = shapes["R"]
    r_expected = [meta["modules"], meta["rank"], meta["rank"]]
    if r != r_expected:
        _fail(
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
            _fail(
                "shape_mismatch",
                f"head.weight shape {w} is not [classes, hidden] with classes in 1..{MAX_CLASSES} "
                f"and hidden in 1..{MAX_HIDDEN}",
                tensor="head.weight",
                value=w,
                limit=[MAX_CLASSES, MAX_HIDDEN],
            )
        if b != [c]:
            _fail(
                "shape_mismatch",
                f"head.bias shape {b} is not [classes] = [{c}]",
                tensor="head.bias",
                value=b,
                expected=[c],
            )
        classes = c
    labels = meta["labels"]
    if labels is not None and len(labels) != classes:
        _fail(
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
            _fail(
                "offsets_invalid",
                f"{name} data_offsets {_show(o)} is not [begin, end] of integers with "
                "0 <= begin <= end",
                tensor=name,
                value=o,
            )
        entries.append({"name": name, "dtype": dtype, "shape": e["shape"], "begin": o[0], "end": o[1]})
    return entries, dtype


def _check_layout(entries: list[dict], data_length: int) -> None:
    at = 0
    prev = "the start of the data"
    for t in sorted(entries, key=lambda t: (t["begin"], t["end"])):
        if t["begin"] < at:
            _fail(
                "offsets_overlap",
                f"{t['name']} starts at {t['begin']}, inside {prev} (ends at {at})",
                tensor=t["name"],
                value=t["begin"],
                limit=at,
            )
        if t["begin"] > at:
            _fail(
                "offsets_gap",
                f"{t['name']} starts at {t['begin']}, leaving a gap after {prev} (ends at {at})",
                tensor=t["name"],
                value=t["begin"],
                expected=at,
            )
        at = t["end"]
        prev = t["name"]
    if at > data_length:
        _fail(
            "offsets_out_of_bounds",
            f"tensor data ends at {at}, past the {data_length} bytes after the header",
            value=at,
            limit=data_length,
        )
    if at < data_length:
        _fail(
            "trailing_bytes",
            f"tensor data ends at {at} but {data_length} bytes follow the header",
            value=data_length - at,
            expected=at,
        )
    for t in entries:
        expected = math.prod(t["shape"]) * DTYPE_BYTES[t["dtype"]]
        if t["end"] - t["begin"] != expected:
            _fail(
                "tensor_size_mismatch",
                f"{t['name']} spans {t['end'] - t['begin']} bytes; shape {t['shape']} of "
                f"{t['dtype']} needs {expected}",
                tensor=t["name"],
                value=t["end"] - t["begin"],
                expected=expected,
            )


def _widen(raw: bytes | bytearray, dtype: str) -> np.ndarray:
    """Little-endian F16 / F32 / BF16 bytes -> float32 (exact)."""
    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32)


def _float_text(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def _check_finite(name: str, values: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        v = float(values[i])
        _fail(
            "value_not_finite",
            f"{name}[{i}] is {_float_text(v)}; adapters hold finite values only",
            tensor=name,
            index=i,
            value=_float_text(v),
        )


def _expectation(expect: Any, key: str) -> Any:
    if expect is None:
        return None
    if isinstance(expect, Mapping):
        return expect.get(key)
    return getattr(expect, key, None)


def _check_expectations(a: Adapter, expect: Any) -> None:
    for code, key in (
        ("model_mismatch", "model"),
        ("factors_mismatch", "factors"),
        ("rank_mismatch", "rank"),
        ("modules_mismatch", "modules"),
    ):
        want = _expectation(expect, key)
        got = getattr(a, key)
        if want is not None and got != want:
            _fail(
                code,
                f"{key} {_show(got)} does not match the model's {_show(want)}",
                value=got,
                expected=want,
            )
    hidden = _expectation(expect, "hidden")
    if hidden is not None and a.head is not None and a.head.hidden != hidden:
        _fail(
            "hidden_mismatch",
            f"head hidden size {a.head.hidden} does not match the model's {hidden}",
            value=a.head.hidden,
            expected=hidden,
        )


def decode_adapter(data: bytes | bytearray | memoryview, expect: Any = None) -> Adapter:
    """Decodes and fully validates an adapter; raises AdapterFormatError (nothing else) with the
    first failed check's code. `expect` is an AdapterExpectations or a dict with the same keys."""
    data = bytes(data)
    header, data_start = _read_header(data)
    meta = _read_metadata(header)
    entries, dtype = _read_entries(header, meta)
    _check_layout(entries, len(data) - data_start)
    try:
        views = dict(safetensors.deserialize(data))
    except Exception as e:  # the checks above are a superset of the library's
        raise AdapterFormatError(
            "header_invalid_json", f"unexpected failure: safetensors rejected the file: {e}"
        ) from None
    tensors: dict[str, np.ndarray] = {}
    for t in entries:
        values = _widen(views[t["name"]]["data"], dtype)
        _check_finite(t["name"], values)
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
    _check_expectations(adapter, expect)
    return adapter


def load_adapter(path: str | Path, expect: Any = None) -> Adapter:
    return decode_adapter(Path(path).read_bytes(), expect)


# ---------------------------------------------------------------- writer


def _as_float32(name: str, x: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A torch tensor or array-like -> contiguous float32 of `shape` (flat input accepted)."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().float().numpy()
    arr = np.asarray(x)
    expected = math.prod(shape)
    if arr.size != expected or (arr.ndim != 1 and tuple(arr.shape) != shape):
        _fail(
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
            _fail(
                "value_not_finite",
                f"{name}[{i}] is {_float_text(v)}; adapters hold finite values only",
                tensor=name,
                index=i,
                value=_float_text(v),
                dtype=dtype,
            )
        _fail(
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
        _fail(
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
        _fail(
            "dtype_unsupported",
            f"dtype {_show(dtype)} is not one of F16, F32, BF16",
            value=dtype,
            allowed=list(DTYPES),
        )
    model = check_model(model)
    factors = check_factors(factors)
    rank = _check_count("rank_invalid", "rank", _as_count_text(rank), MAX_RANK)
    modules = _check_count("modules_invalid", "modules", _as_count_text(modules), MAX_MODULES)
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
        _fail(
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
            _fail(
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
        _fail(
            "header_too_large",
            f"the header would be {len(header)} bytes; limit {MAX_HEADER_BYTES}",
            value=len(header),
            limit=MAX_HEADER_BYTES,
        )
    total = HEADER_PREFIX_BYTES + len(header) + offset
    if total > MAX_ADAPTER_BYTES:
        _fail(
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
