"""bench/quality.py and the population factors: user groups, the Brown reader, the basis, one tiny run and its report."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest
import torch

from loraxs.data import Blocks, brown_untag, user_groups
from loraxs.population import population_basis

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import quality as q  # noqa: E402


def test_user_groups_are_a_stable_partition_by_name():
    names = [f"user{i}" for i in range(33)]
    g = user_groups(names, "sotu")
    assert sorted(g) == sorted(names)
    counts = {k: sum(1 for v in g.values() if v == k) for k in ("eval", "factor", "tune")}
    assert counts == {"eval": 16, "factor": 11, "tune": 6}
    # adding a user moves at most a few others, and the same names in another domain split differently
    assert user_groups(names, "sotu") == g and user_groups(names, "brown") != g


def test_brown_untag_restores_words_and_spacing():
    tagged = "\n\n\tThe/at Fulton/np-tl jury/nn said/vbd ``/`` it/pps did/dod n't/* ''/'' ./.\n\n\tSecond/od line/nn ,/, here/rb ./."
    assert brown_untag(tagged) == 'The Fulton jury said " it didn\'t ". \nSecond line, here.'.replace(" \n", "\n")


def test_population_basis_recovers_the_shared_directions():
    torch.manual_seed(0)
    out_f, in_f, r = 24, 20, 3
    U = torch.linalg.qr(torch.randn(out_f, r)).Q
    V = torch.linalg.qr(torch.randn(in_f, r)).Q
    deltas = [U @ torch.randn(r, r) @ V.T * 0.01 for _ in range(6)]  # every user moves inside span(U) x span(V)
    W = torch.randn(out_f, in_f)
    down, up, sigma = population_basis(deltas, r, W)
    assert down.shape == (r, in_f) and up.shape == (out_f, r) and sigma.shape == (r,)
    # the learned spans are the planted ones: projecting the planted bases loses nothing
    assert torch.allclose(up @ (up.T @ U), U, atol=1e-4)
    Vd = torch.linalg.qr(down.T).Q
    assert torch.allclose(Vd @ (Vd.T @ V), V, atol=1e-4)
    # down carries the energy of the weight's own top-r SVD factors (rates transfer between kinds)
    want = torch.linalg.svdvals(W)[:r].pow(2).sum()
    assert down.pow(2).sum() == pytest.approx(float(want), rel=1e-4)
    assert bool((sigma[:-1] >= sigma[1:]).all())
    with pytest.raises(ValueError, match="rank 30 exceeds"):
        population_basis(deltas, 30, W)
    with pytest.raises(ValueError, match="no updates"):
        population_basis([], r, W)


def test_cut_takes_the_first_tokens_and_refuses_short_users():
    blocks = Blocks(torch.arange(40 * 8).view(40, 8), torch.ones(40, 8, dtype=torch.long))
    u = q.User("sotu", "a", "eval", blocks, blocks)
    train, val = q.cut(u, 20 * 8, 8, seed=1)
    assert len(train) + len(val) == 20 and len(val) == 2
    assert set(torch.cat([train.ids[:, 0], val.ids[:, 0]]).tolist()) == {8 * i for i in range(20)}
    assert q.cut(u, 41 * 8, 8, seed=1) is None



def write_toy_corpora(path: Path) -> Path:
    """Six users per domain of 600 training and 100 held-out words: the protocol at toy size."""
    words = "the union is strong and the people are free to choose their own way of life under law".split()
    doc = {d: [{"name": f"{d}{k}", "train": [" ".join(words[(i * (k + 1) + k) % len(words)] for i in range(600))],
                "heldout": [" ".join(words[(i * (k + 2)) % len(words)] for i in range(100))],
                "train_years": [1], "heldout_years": [2]} for k in range(6)] for d in ("sotu", "brown")}
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))
    return path


def test_tiny_run_and_report(tiny_dir, tmp_path):
    data = write_toy_corpora(tmp_path / "c.json.gz")
    out = tmp_path / "out"
    rc = q.main(["--gguf", "tiny-llama", "--model-dir", str(tiny_dir), "--data", str(data), "--sizes", "256",
                 "--epochs", "256:1", "--seq-len", "32", "--eval-seq-len", "32", "--batch", "2",
                 "--methods", "lora-r8-qv,xs-svd-r16-qv,xs-pop-r16-qv,xs-popsotu-r16-qv", "--out-dir", str(out),
                 "--factors-out", str(tmp_path / "factors"), "--device", "cpu"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in res["runs"]] == ["lora-r8-qv", "xs-svd-r16-qv", "xs-pop-r16-qv", "xs-popsotu-r16-qv"]
    assert all(r["status"] == "done" for r in res["runs"])
    groups = {k: u["group"] for k, u in res["users"].items()}
    for r in res["runs"]:  # nothing trains factor users; pop-sotu only Brown users
        assert r["users"] and all(groups[k] in ("tune", "eval") for k in r["users"])
        assert r["method"] != "xs-popsotu-r16-qv" or all(k.startswith("brown:") for k in r["users"])
        for row in r["users"].values():  # the kept adapter never scores worse than its start on validation
            assert row["val_ppl"] <= row["start_val_ppl"] * (1 + 1e-6)
    pop = res["factors"]["pop-qv"]
    assert sorted(pop["users"]) == sorted(k for k, g in groups.items() if g == "factor")
    assert pop["metadata"]["svd"] == "population"
    assert sorted(p.name for p in (tmp_path / "factors").iterdir()) == ["pop-all.safetensors", "pop-qv.safetensors",
                                                                        "pop-sotu-qv.safetensors"]
    rc = q.main(["--report", str(out / "results.json"), "--results-file", str(tmp_path / "q.json"), "--plot", str(tmp_path / "q.svg")])
    assert rc == 0
    rep = json.loads((tmp_path / "q.json").read_text())
    peer = [e for e in rep["entries"] if e["method"] == "lora-r8-qv"]
    assert peer and all(e["fraction_of_lora_gain_mean"] == pytest.approx(1.0) for e in peer if e["fraction_of_lora_gain_mean"] is not None)
    assert rep["chosen_by_tuning_users"] in ("xs-svd-r16-qv", "xs-pop-r16-qv")
    assert (tmp_path / "q.svg").read_text().startswith("<svg")
