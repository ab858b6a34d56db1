"""A value as short JSON for error messages (src/format/show.ts)."""

from __future__ import annotations

import json
from typing import Any


def show(v: Any) -> str:
    try:
        s = json.dumps(v, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."
