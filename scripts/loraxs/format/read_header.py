"""The 8-byte length and the JSON header (src/format/read-header.ts)."""

from __future__ import annotations

from .errors import fail
from .limits import HEADER_PREFIX_BYTES, MAX_ADAPTER_BYTES, MAX_HEADER_BYTES
from .show import show
from .strict_json import JsonSyntaxError, parse_json


def read_header(data: bytes) -> tuple[dict, int]:
    n = len(data)
    if n < HEADER_PREFIX_BYTES:
        fail("file_too_small", f"file is {n} bytes; a header length needs 8", value=n, limit=8)
    if n > MAX_ADAPTER_BYTES:
        fail(
            "file_too_large",
            f"file is {n} bytes; limit {MAX_ADAPTER_BYTES}",
            value=n,
            limit=MAX_ADAPTER_BYTES,
        )
    length = int.from_bytes(data[:8], "little")
    if length > MAX_HEADER_BYTES:
        fail(
            "header_too_large",
            f"header length {length} is over the limit {MAX_HEADER_BYTES}",
            value=length,
            limit=MAX_HEADER_BYTES,
        )
    if HEADER_PREFIX_BYTES + length > n:
        fail(
            "header_out_of_bounds",
            f"header length {length} runs past the end of the {n}-byte file",
            value=length,
            limit=n - HEADER_PREFIX_BYTES,
        )
    try:
        text = bytes(data[8 : 8 + length]).decode("utf-8")
    except UnicodeDecodeError:
        fail("header_not_utf8", "header is not valid UTF-8")
    try:
        header = parse_json(text)
    except JsonSyntaxError as e:
        fail("header_invalid_json", f"header is not valid JSON: {e}")
    if not isinstance(header, dict):
        fail("header_not_object", f"header is {show(header)}, not a JSON object", value=header)
    return header, HEADER_PREFIX_BYTES + length
