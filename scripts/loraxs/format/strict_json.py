"""Strict JSON for safetensors headers, mirroring src/format/json.ts.

Python's json module is used with hooks so it agrees with the TypeScript reader on every
header: numbers written with a fraction or exponent, `-0`, or more than 16 digits are not
integers (the official reader rejects `1.0` as a size); duplicate keys, NaN/Infinity, lone
surrogates and nesting deeper than MAX_JSON_DEPTH are syntax errors.
"""

from __future__ import annotations

import json
import re

from .limits import MAX_INTEGER_DIGITS, MAX_JSON_DEPTH


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonSyntaxError(ValueError):
    pass


class JsonNonInteger:
    """A number literal that is not a plain integer (kept as its source text)."""

    __slots__ = ("source",)

    def __init__(self, source: str) -> None:
        self.source = source

    def __repr__(self) -> str:
        return self.source


def _pairs(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise JsonSyntaxError(f'duplicate key "{key}"')
        out[key] = value
    return out


def _int(source: str) -> int | JsonNonInteger:
    digits = source[1:] if source.startswith("-") else source
    if source == "-0" or len(digits) > MAX_INTEGER_DIGITS:
        return JsonNonInteger(source)
    return int(source)


def _constant(name: str) -> None:
    raise JsonSyntaxError(f"{name} is not JSON")


def _check(value: object, depth: int) -> None:
    if isinstance(value, (dict, list)):
        if depth >= MAX_JSON_DEPTH:
            raise JsonSyntaxError(f"nesting deeper than {MAX_JSON_DEPTH}")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and _LONE_SURROGATE.search(key):
                raise JsonSyntaxError("unpaired surrogate in string")
            _check(item, depth + 1)
    elif isinstance(value, str) and _LONE_SURROGATE.search(value):
        raise JsonSyntaxError("unpaired surrogate in string")


def parse_json(text: str) -> object:
    """Parses one JSON value (surrounding whitespace allowed); raises JsonSyntaxError."""
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_float=JsonNonInteger,
            parse_int=_int,
            parse_constant=_constant,
        )
    except JsonSyntaxError:
        raise
    except RecursionError:
        raise JsonSyntaxError(f"nesting deeper than {MAX_JSON_DEPTH}") from None
    except ValueError as e:  # json.JSONDecodeError
        raise JsonSyntaxError(str(e)) from None
    _check(value, 0)
    return value
