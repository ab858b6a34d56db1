"""One line per worker round: jobs claimed, tokens trained, and where the seconds went.

A round is one claim that returned jobs, everything done with them, and the uploads. Phases:
- poll: time the worker waited on an empty queue before this round's claim (idle, not work);
- claim: the claim requests that returned this round's jobs;
- data: downloading and tokenizing each job's data;
- compile: torch.compile time inside training (dynamo's own clock: tracing, inductor, backward);
- train: training minus compile;
- upload: the `complete` calls (adapter bytes) and any `fail` calls.

    text: round 3: 2 job(s) claimed, 2 trained, 0 failed, 1,234 tokens; poll 1.0s claim 0.02s data 0.10s ...
    json: {"event": "round", "round": 3, "jobs": 2, ..., "seconds": {"poll": 1.0, ...}}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

PHASES = ("poll", "claim", "data", "compile", "train", "upload")

# dynamo's per-phase clocks whose sum is the compile time of a training run: every frame's
# compile (trace + AOT + inductor forward) and the lazily compiled backward graphs.
_COMPILE_CLOCKS = ("_compile.compile_inner", "backward._backward_impl")


def compile_seconds() -> float:
    """Seconds torch.compile has spent in this process so far (0 before torch compiles anything)."""
    try:
        from torch._dynamo.utils import compilation_time_metrics
    except ImportError:  # a torch without dynamo compiles nothing
        return 0.0
    return float(sum(sum(compilation_time_metrics.get(k, ())) for k in _COMPILE_CLOCKS))


@dataclass
class Round:
    """Counts and phase clocks of one round; `line()` / `record()` render it."""

    number: int
    jobs: int = 0
    trained: int = 0  # users whose adapter was uploaded
    failed: int = 0  # jobs failed or released
    tokens: int = 0  # real (unpadded) tokens the trainer stepped on, summed over steps
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    started: float = field(default_factory=time.monotonic)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in self.seconds:
            raise ValueError(f"phase {name!r} is not one of {', '.join(PHASES)}")
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] += time.monotonic() - t0

    @contextmanager
    def training(self) -> Iterator[None]:
        """Times a training run, splitting torch.compile's share out into `compile`."""
        c0, t0 = compile_seconds(), time.monotonic()
        try:
            yield
        finally:
            wall = time.monotonic() - t0
            compiled = min(wall, compile_seconds() - c0)
            self.seconds["compile"] += compiled
            self.seconds["train"] += wall - compiled

    def record(self) -> dict:
        total = time.monotonic() - self.started
        return {"event": "round", "round": self.number, "jobs": self.jobs, "trained": self.trained,
                "failed": self.failed, "tokens": self.tokens, "total_s": round(total, 3),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}

    def line(self) -> str:
        r = self.record()
        phases = " ".join(f"{k} {v:.2f}s" for k, v in r["seconds"].items())
        return (f"round {r['round']}: {r['jobs']} job(s) claimed, {r['trained']} trained, {r['failed']} failed, "
                f"{r['tokens']:,} tokens; {phases}; round {r['total_s']:.2f}s")


def emit(round_: Round, log: Callable[[str], None], as_json: bool) -> None:
    """The round's one line: JSON (one object, nothing else on the line) or text through `log`."""
    if as_json:
        print(json.dumps(round_.record(), separators=(",", ":")), flush=True)
    else:
        log(round_.line())
