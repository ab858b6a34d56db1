"""What the reader returns and what it can be asked to match (src/format/types.ts)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
