"""The metadata keys and the rule for each value (src/format/metadata.ts)."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from .errors import fail
from .limits import MAX_CLASSES, MAX_LABEL_BYTES, MAX_MODEL_ID_BYTES, MAX_NOTE_BYTES, MAX_SAFE_INTEGER
from .show import show


FORMAT = "loraxs"
FORMAT_VERSION = "1"
REQUIRED_KEYS = ("format", "format_version", "model", "factors", "rank", "modules")
OPTIONAL_KEYS = ("created", "source", "steps", "note")
METADATA_KEYS = (*REQUIRED_KEYS, "labels", *OPTIONAL_KEYS)
SOURCES = ("worker", "client", "import")

_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_POSITIVE_INTEGER = re.compile(r"[1-9][0-9]{0,15}")
_NON_NEGATIVE_INTEGER = re.compile(r"0|[1-9][0-9]{0,15}")
_CREATED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def check_model(model: Any) -> str:
    if (
        not isinstance(model, str)
        or not _MODEL_ID.fullmatch(model)
        or len(model) > MAX_MODEL_ID_BYTES
    ):
        fail(
            "model_invalid",
            f"model {show(model)} is not a model id (lowercase letters, digits, '.', '_', '-'; "
            f"at most {MAX_MODEL_ID_BYTES} characters)",
            value=model,
            limit=MAX_MODEL_ID_BYTES,
        )
    return model


def check_factors(factors: Any) -> str:
    if not isinstance(factors, str) or not _DIGEST.fullmatch(factors):
        fail(
            "factors_invalid",
            f'factors {show(factors)} is not "sha256:" followed by 64 lowercase hex digits',
            value=factors,
        )
    return factors


def check_count(code: str, key: str, value: Any, limit: int) -> int:
    n = int(value) if isinstance(value, str) and _POSITIVE_INTEGER.fullmatch(value) else 0
    if not 1 <= n <= limit:
        fail(
            code,
            f"{key} {show(value)} is not a positive integer written in decimal without leading "
            f"zeros, at most {limit}",
            value=value,
            limit=limit,
        )
    return n


def as_count_text(v: Any) -> Any:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v)) if abs(int(v)) <= MAX_SAFE_INTEGER else v
    return v


def check_labels(labels: Any) -> list[str]:
    def bad(why: str):
        fail("labels_invalid", f"labels {why}", value=labels, limit=MAX_CLASSES)

    if not isinstance(labels, (list, tuple)):
        bad("must be an array of strings")
    if not 1 <= len(labels) <= MAX_CLASSES:
        bad(f"has {len(labels)} entries; allowed 1..{MAX_CLASSES}")
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            bad(f"[{i}] is not a string")
        if len(label) == 0 or _CONTROL.search(label) or _SURROGATE.search(label):
            bad(f"[{i}] {show(label)} is empty or has a control character or lone surrogate")
        if utf8_len(label) > MAX_LABEL_BYTES:
            bad(f"[{i}] is {utf8_len(label)} UTF-8 bytes; limit {MAX_LABEL_BYTES}")
        if label in seen:
            bad(f"[{i}] {show(label)} repeats an earlier label")
        seen.add(label)
    return list(labels)


def parse_labels_text(text: str) -> list[str]:
    try:
        parsed = json.loads(text, parse_constant=lambda name: float("nan"))
    except (ValueError, RecursionError):
        fail("labels_invalid", f"labels {show(text[:80])} is not JSON", value=text)
    return check_labels(parsed)


def check_optional(key: str, value: Any) -> str:
    def bad(allowed: str):
        fail(
            "metadata_value_invalid",
            f"{key} {show(value)} is invalid; {allowed}",
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
    if key == "note" and (_SURROGATE.search(value) or utf8_len(value) > MAX_NOTE_BYTES):
        bad(f"expected at most {MAX_NOTE_BYTES} UTF-8 bytes and no lone surrogate")
    return value
