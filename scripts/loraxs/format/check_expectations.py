"""An adapter against what the model expects (src/format/check-expectations.ts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .adapter_types import Adapter
from .errors import fail
from .show import show


def _expectation(expect: Any, key: str) -> Any:
    if expect is None:
        return None
    if isinstance(expect, Mapping):
        return expect.get(key)
    return getattr(expect, key, None)


def check_expectations(a: Adapter, expect: Any) -> None:
    for code, key in (
        ("model_mismatch", "model"),
        ("factors_mismatch", "factors"),
        ("rank_mismatch", "rank"),
        ("modules_mismatch", "modules"),
    ):
        want = _expectation(expect, key)
        got = getattr(a, key)
        if want is not None and got != want:
            fail(
                code,
                f"{key} {show(got)} does not match the model's {show(want)}",
                value=got,
                expected=want,
            )
    hidden = _expectation(expect, "hidden")
    if hidden is not None and a.head is not None and a.head.hidden != hidden:
        fail(
            "hidden_mismatch",
            f"head hidden size {a.head.hidden} does not match the model's {hidden}",
            value=a.head.hidden,
            expected=hidden,
        )
