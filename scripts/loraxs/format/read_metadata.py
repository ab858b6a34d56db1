"""`__metadata__`: keys, then each value (src/format/read-metadata.ts)."""

from __future__ import annotations

from .errors import fail
from .limits import MAX_MODULES, MAX_RANK
from .metadata import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEYS,
    OPTIONAL_KEYS,
    REQUIRED_KEYS,
    check_count,
    check_factors,
    check_model,
    check_optional,
    parse_labels_text,
)
from .show import show


def read_metadata(header: dict) -> dict:
    raw = header.get("__metadata__")
    if not isinstance(raw, dict):
        fail(
            "metadata_missing",
            f"__metadata__ is {show('absent' if raw is None else raw)}, not an object of strings",
        )
    metadata: dict[str, str] = {}
    for key in sorted(raw):
        v = raw[key]
        if not isinstance(v, str):
            fail(
                "metadata_not_string",
                f"__metadata__.{key} is {show(v)}, not a string",
                key=key,
                value=v,
            )
        metadata[key] = v
    # The two keys that say which format this is, in the order readMetadata checks them.
    for key, code, expected in (
        ("format", "format_unknown", FORMAT),
        ("format_version", "format_version_unknown", FORMAT_VERSION),
    ):
        if metadata.get(key) != expected:
            value = metadata.get(key)
            fail(code, f'{key} {show(value)} is not "{expected}"', value=value, allowed=[expected])
    unknown = [k for k in metadata if k not in METADATA_KEYS]
    if unknown:
        fail(
            "metadata_key_unknown",
            f"metadata keys {', '.join(unknown)} are not part of format_version 1; "
            f"allowed: {', '.join(METADATA_KEYS)}",
            value=unknown,
            allowed=list(METADATA_KEYS),
        )
    for key in REQUIRED_KEYS:
        if key not in metadata:
            fail("metadata_key_missing", f'metadata key "{key}" is missing', key=key)
    meta = {
        "metadata": metadata,
        "model": check_model(metadata["model"]),
        "factors": check_factors(metadata["factors"]),
        "rank": check_count("rank_invalid", "rank", metadata["rank"], MAX_RANK),
        "modules": check_count("modules_invalid", "modules", metadata["modules"], MAX_MODULES),
        "labels": None,
    }
    if "labels" in metadata:
        meta["labels"] = parse_labels_text(metadata["labels"])
    for key in OPTIONAL_KEYS:
        if key in metadata:
            check_optional(key, metadata[key])
    return meta
