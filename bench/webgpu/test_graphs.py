"""The benchmark's graph rewrites compute what the exported graph computes (tiny-llama, CPU).

    PYTHONPATH=scripts .venv/bin/python -m pytest bench/webgpu/test_graphs.py -q
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "scripts"))

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from loraxs import prepare

    out = tmp_path_factory.mktemp("tiny-llama")
    prepare.prepare(prepare.parse_args(["--preset", "tiny-llama", "--out", str(out), "--device", "cpu",
                                        "--no-reference"]))
    return out


def _feeds(m: dict, R: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    c = m["config"]
    rng = np.random.default_rng(seed)
    T = 5
    f = {"input_ids": rng.integers(3, c["vocab_size"], (1, T)).astype(np.int64),
         "attention_mask": np.ones((1, T), np.int64), "position_ids": np.arange(T, dtype=np.int64)[None], "R": R}
    for i in range(c["num_layers"]):
        for k in ("key", "value"):
            f[f"past_key_values.{i}.{k}"] = np.zeros((1, c["num_kv_heads"], 0, c["head_dim"]), np.float32)
    return f


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    o = ort.SessionOptions()
    o.log_severity_level = 3
    s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    return s.run(None, {k: v for k, v in feeds.items() if k in names})


def test_plain_is_the_graph_at_R_zero_without_R(model_dir: Path):
    import json

    from make_model import write_plain

    write_plain(model_dir)
    plain = onnx.load(str(model_dir / "plain.onnx"), load_external_data=False)
    assert "R" not in {i.name for i in plain.graph.input}
    assert not any("R" in n.input for n in plain.graph.node)
    m = json.loads((model_dir / "manifest.json").read_text())
    shape = m["io"]["R"]["shape"]
    zeros = _feeds(m, np.zeros(shape, np.float32))
    a, b = _run(model_dir / "model.onnx", zeros), _run(model_dir / "plain.onnx", zeros)
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b)) < 1e-5
    personal = _run(model_dir / "model.onnx", _feeds(m, np.full(shape, 0.3, np.float32)))
    assert float(np.abs(personal[0] - b[0]).max()) > 1e-2  # the cut branch is what R moves


@pytest.mark.parametrize("per_layer,fold", [(False, False), (True, False), (True, True)])
def test_merged_graph_matches_the_exported_graph(model_dir: Path, per_layer: bool, fold: bool):
    import json

    from merge_graph import find_branches, fold_stacks, merge

    m = json.loads((model_dir / "manifest.json").read_text())
    src = onnx.load(str(model_dir / "model.onnx"), load_external_data=fold)
    assert len(find_branches(src.graph)) == len(m["modules"])
    merged = merge(src, per_layer)
    dst = model_dir / f"merged-{per_layer}-{fold}.onnx"
    if fold:
        assert fold_stacks(merged) == 6  # down, up, W stacks for q and v
        onnx.save_model(merged, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=dst.name + ".data", size_threshold=1024)
    else:
        onnx.save(merged, str(dst))
    readers = [n for n in merged.graph.node if "R" in n.input]
    assert len(readers) == 2  # one Gather of R per group of same-shaped modules, not one per module
    rng = np.random.default_rng(1)
    R = (rng.standard_normal(m["io"]["R"]["shape"]) * 0.3).astype(np.float32)
    want = _run(model_dir / "model.onnx", _feeds(m, R))
    got = _run(dst, _feeds(m, R))
    base = _run(model_dir / "model.onnx", _feeds(m, np.zeros_like(R)))
    assert float(np.abs(want[0] - base[0]).max()) > 1e-2
    assert max(float(np.abs(x - y).max()) for x, y in zip(want, got)) < 1e-4
