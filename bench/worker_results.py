"""Merges figures into bench/results/worker.json: keys are replaced one by one, objects merged
(`job_to_adapter_p50_s: {cpu_tiny_1: ...}` keeps the other setups' entries); nothing else is touched.
bench/time_to_adapter.mjs merges the same file the same way."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "worker.json"


def merge_results(updates: dict, path: Path = RESULTS) -> dict:
    current = json.loads(path.read_text()) if path.is_file() else {}
    for k, v in updates.items():
        if isinstance(v, dict) and isinstance(current.get(k), dict):
            current[k] = {**current[k], **v}
        else:
            current[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    return current
