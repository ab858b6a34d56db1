"""Merges the GPU calls' figures (bench/worker-gpu/run.sh's worker-A/B/C.json) into bench/results/worker.json
and prints the rows for BENCHMARKS.md ("Worker: time to adapter").

    python3 bench/worker-gpu/collect.py <files_at>/out/worker-gpu   (the folder the device calls returned)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worker_results import merge_results  # noqa: E402

FROM_CALL = {"A": ("peft_compiled_tok_s", "loraxs_fast_tok_s"), "B": ("first_step_s_cold", "first_step_s_warm"),
             "C": ("time_to_adapter_gpu_smollm2",)}
SETUPS = ("gpu_smollm2_1", "gpu_smollm2_64")


def main(folder: str) -> int:
    got: dict = {}
    for call, keys in FROM_CALL.items():
        f = Path(folder) / f"worker-{call}.json"
        if not f.is_file():
            print(f"{f}: missing (call {call} did not finish?)", file=sys.stderr)
            continue
        data = json.loads(f.read_text())
        got.update({k: data[k] for k in keys if k in data})
        if call == "C":
            for k in ("job_to_adapter_p50_s", "job_to_adapter_p95_s"):
                got[k] = {s: v for s, v in data.get(k, {}).items() if s in SETUPS}
    merge_results(got)
    print(json.dumps(got, indent=1))
    rows = Path(folder) / "train_gpu.json"
    if rows.is_file():
        print("\n| setup | batch | step ms | tokens/s | users / GPU-hour (20 k tokens × 2 epochs) |\n|---|---|---|---|---|")
        for r in json.loads(rows.read_text()):
            per_hour = f"{r['tokens_per_s'] * 3600 / 40_000:,.0f}" if r["trainable"] else "—"
            print(f"| {r['setup']} | {r['batch']} | {r['step_ms']:.1f} | {r['tokens_per_s'] / 1e3:.0f} k | {per_hour} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "out/worker-gpu"))
