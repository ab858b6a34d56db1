"""The worker's warm start (loraxs.compile_cache) and its round clocks (loraxs.round_log), on the CPU.

The warm-start test compiles for real (inductor, a matmul only: no C++ kernel to build) in one
fresh process, saves the artifacts, and checks that a second fresh process with an empty
inductor cache and another number of rows (dynamic, as the trainer marks them) loads them and
hits inductor's graph cache instead of compiling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from loraxs.compile_cache import CompileCache, cache_key
from loraxs.fast_path import SHAPE_POLICY
from loraxs.round_log import PHASES, Round

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = {"id": "tiny-llama", "factors": {"sha256": "sha256:" + "ab" * 32}}


def key(**change) -> dict:
    return {**cache_key(MANIFEST, "cpu", "auto", {}), **change}


def test_a_missing_entry_names_the_fields_of_the_stale_one(tmp_path):
    lines: list[str] = []
    old = CompileCache(tmp_path, key(torch="2.0.0", device="NVIDIA H100 80GB HBM3"), lines.append)
    old.meta.write_text(json.dumps({"key": old.key}))
    old.path.write_bytes(b"not read: another key")
    assert CompileCache(tmp_path, key(), lines.append).load() is False
    assert len(lines) == 1 and "compiling cold" in lines[0], lines
    assert f"torch '2.0.0' -> '{torch.__version__}'" in lines[0] and "device 'NVIDIA H100 80GB HBM3' -> 'cpu'" in lines[0]
    assert "factors" not in lines[0]  # only the fields that differ


def test_a_corrupt_file_is_reported_and_skipped(tmp_path):
    lines: list[str] = []
    cache = CompileCache(tmp_path, key(), lines.append)
    cache.path.write_bytes(b"\x00garbage" * 10)
    assert cache.load() is False and cache.loaded is False
    assert any(f"{cache.path} is unreadable" in line and "compiling cold" in line for line in lines), lines


def test_keys_differ_by_model_factors_shapes_torch_and_device(tmp_path):
    paths = {CompileCache(tmp_path, k, print).path for k in (
        key(), key(model="other"), key(factors="sha256:" + "cd" * 32), key(shapes="static"), key(torch="9.9"), key(device="gpu"))}
    assert len(paths) == 6
    assert key()["shapes"] == SHAPE_POLICY and "max_batch" not in key()  # rounds of any size share one entry


SCRIPT = textwrap.dedent("""
    import sys, torch
    from torch._dynamo.utils import counters
    from loraxs.compile_cache import CompileCache
    from loraxs.fast_path import mark_rows_dynamic
    cache = CompileCache(sys.argv[1], {"model": "m", "factors": "f"}, print)
    if sys.argv[2] == "warm":
        assert cache.load(), "expected a warm start"
    x = torch.randn(8 if sys.argv[2] == "cold" else 3, 8)  # the rows are dynamic: the warm run has fewer
    mark_rows_dynamic(x)
    with torch.no_grad():
        torch.compile(lambda x: x @ x.T)(x)
    print("inductor", dict(counters["inductor"]))
    if sys.argv[2] == "cold":
        assert cache.save()
""")


def run_fresh(cache_dir: Path, inductor_dir: Path, mode: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts"), "TORCHINDUCTOR_CACHE_DIR": str(inductor_dir)}
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(cache_dir), mode], env=env, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_saved_artifacts_warm_a_fresh_process(tmp_path):
    cold = run_fresh(tmp_path / "cache", tmp_path / "inductor-1", "cold")
    assert "'fxgraph_cache_miss': 1" in cold and "compile cache: saved" in cold, cold
    warm = run_fresh(tmp_path / "cache", tmp_path / "inductor-2", "warm")  # empty inductor cache: a fresh machine
    assert "compile cache: loaded" in warm and "'fxgraph_cache_hit': 1" in warm, warm
    assert "fxgraph_cache_miss" not in warm, warm


def test_a_round_splits_compile_time_out_of_training():
    r = Round(7)
    with r.phase("claim"):
        pass
    with r.training():
        torch.compile(lambda x: x * 2 + 1, backend="eager")(torch.randn(5))  # dynamo's clock runs, no codegen
    rec = r.record()
    assert set(rec["seconds"]) == set(PHASES)
    assert rec["seconds"]["compile"] > 0 and rec["seconds"]["train"] >= 0
    assert rec["round"] == 7 and rec["total_s"] >= rec["seconds"]["compile"]
    assert r.line().startswith("round 7: 0 job(s) claimed, 0 trained, 0 failed, 0 tokens; poll 0.00s claim ")
