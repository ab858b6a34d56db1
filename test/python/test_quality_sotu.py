"""bench/quality_sotu.py: the goal arithmetic, the factor set each grid cell trains on, and one tiny grid end to end."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from loraxs.lora_xs import LoraXSLinear, find_target_modules, load_factors, save_factors

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("quality_sotu", REPO / "bench" / "quality_sotu.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("quality_sotu", mod)
    spec.loader.exec_module(mod)
    return mod


qs = _bench()


def test_gain_fraction_mean_median_pooled():
    e = math.exp
    f = qs.gain_fraction([e(2), e(2), e(3)], [e(1.5), e(1), e(2.9)], [e(1), e(1), e(3)])
    # user 1 closes half of LoRA's gain, user 2 all of it; user 3's LoRA gained nothing: not in mean/median
    assert f["per_user"][:2] == pytest.approx([0.5, 1.0])
    assert math.isnan(f["per_user"][2])
    assert f["mean"] == pytest.approx(0.75) and f["median"] == pytest.approx(0.75)
    assert f["pooled"] == pytest.approx((0.5 + 1.0 + 0.1) / (1 + 1 + 0))
    assert f["users"] == 3
    # worse than base counts as a negative fraction, not as zero
    assert qs.gain_fraction([e(2)], [e(2.5)], [e(1)])["mean"] == pytest.approx(-0.5)


def test_goal_needs_both_fraction_and_bytes_ratio():
    f = {"mean": 0.85, "median": 0.9, "pooled": 0.8, "users": 3}
    assert qs.goal_row("q_proj,v_proj", 16, f, 31_168, 922_000)["met"]  # 29.6x
    assert not qs.goal_row("q_proj,v_proj", 64, f, 491_000, 922_000)["met"]  # 1.9x fewer bytes only
    low = {**f, "mean": 0.79}
    g = qs.goal_row("all-linear", 4, low, 10_000, 9_000_000)
    assert not g["met"] and g["bytes_ratio"] == pytest.approx(900)
    assert "not met" in qs.goal_sentence(g) and "79 %" in qs.goal_sentence(g)


def test_grid_helpers():
    assert qs.parse_targets("q_proj,v_proj; all-linear") == ["q_proj,v_proj", "all-linear"]
    with pytest.raises(ValueError):
        qs.parse_targets("all-linear;all-linear")
    assert qs.method_key("loraxs", "q_proj,v_proj", 16) == "loraxs-r16-qv"
    assert qs.method_key("lora", "all-linear", 8) == "lora-r8-all"
    assert qs.spread(33, 4) == [0, 11, 21, 32] and qs.spread(3, 5) == [0, 1, 2] and qs.spread(10, 1) == [0]
    assert qs.pick_lr({1e-3: 3.0, 3e-3: 2.9, 1e-2: 2.95}) == (3e-3, False)
    assert qs.pick_lr({1e-3: 3.0, 3e-3: 2.9}) == (3e-3, True)
    assert len({qs.sweep_name("a", lr) for lr in (1e-3, 3e-3, 1e-2)}) == 3


def test_clock_skips_what_does_not_fit():
    t = [100.0]
    c = qs.Clock(50, start=100.0, now=lambda: t[0])
    assert c.fits(50) and not c.over()
    t[0] = 130.0
    assert c.fits(20) and not c.fits(21) and not c.over()
    t[0] = 151.0
    assert c.over()
    assert qs.Clock(0, start=0.0, now=lambda: 1e9).fits(1e9)  # 0 = no limit


def test_estimate_scales_a_measured_module_set():
    run = object.__new__(qs.Run)
    run.measured = {}
    qv, al = qs.PRIOR_LORA_STEP_S["q_proj,v_proj"], qs.PRIOR_LORA_STEP_S["all-linear"]
    assert run.estimate("lora", "all-linear", 1000, 10) == pytest.approx(10 * al)
    assert run.estimate("loraxs", "q_proj,v_proj", 1000) == pytest.approx(1000 / qs.PRIOR_XS_TOKENS_PER_S["q_proj,v_proj"])
    run.measured[("lora", "q_proj,v_proj")] = 2e-6
    assert run.estimate("lora", "q_proj,v_proj", 1000, 10) == pytest.approx(2e-3)
    assert run.estimate("lora", "all-linear", 1000, 10) == pytest.approx(2e-3 * al / qv)
    assert run.estimate("loraxs", "all-linear", 1000) == pytest.approx(1000 / qs.PRIOR_XS_TOKENS_PER_S["all-linear"])


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=64, max_position_embeddings=64, tie_word_embeddings=True)
    cfg._attn_implementation = "eager"
    return LlamaForCausalLM(cfg).eval()


def test_factor_set_uses_the_committed_file_only_for_the_manifest_set(tmp_path):
    from loraxs.svd import SvdOptions, compute_factors

    clean = _tiny_llama()
    before = {k: v.clone() for k, v in clean.state_dict().items()}
    names = find_target_modules(clean, "q_proj,v_proj")
    f, _ = compute_factors(clean, names, 4, SvdOptions(), "t", log=lambda s: None)
    save_factors(tmp_path / "factors.safetensors", f, "t")
    committed = load_factors(tmp_path / "factors.safetensors")
    manifest = {"id": "t", "rank": 4, "modules": [{"name": n} for n in names], "factors": {"sha256": committed.digest}}

    same, is_committed, _ = qs.factor_set(clean, manifest, committed, "q_proj,v_proj", 4, "cpu", tmp_path)
    assert is_committed and same is committed

    other, is_committed, _ = qs.factor_set(clean, manifest, committed, "all-linear", 2, "cpu", tmp_path)
    assert not is_committed
    assert other.rank == 2 and other.names == find_target_modules(clean, "all-linear") and len(other.names) == 14
    assert other.digest.startswith("sha256:") and other.digest != committed.digest
    assert all(other.down[n].shape == (2, clean.get_submodule(n).in_features) for n in other.names)

    model, source = qs.build_loraxs(clean, other, "cpu")
    adapted = {n: m for n, m in model.named_modules() if isinstance(m, LoraXSLinear)}
    assert list(adapted) == other.names and (source.modules, source.rank) == (14, 2)
    assert all(torch.equal(adapted[n].down, other.down[n]) for n in other.names)
    # the clean base stays clean: a later factor set starts from the same weights
    assert not any(isinstance(m, LoraXSLinear) for m in clean.modules())
    assert all(torch.equal(before[k], v) for k, v in clean.state_dict().items())
    assert len(list(tmp_path.glob("factors-r*"))) == 0



def test_tiny_grid_end_to_end(tiny_dir, tmp_path):
    words = "the union is strong and the people are free to choose their own way of life".split()
    presidents = []
    for k, name in enumerate(["alpha_one", "beta_two"]):
        text = lambda n, s: " ".join(words[(i * (k + s)) % len(words)] for i in range(n))  # noqa: E731
        presidents.append({"name": name, "train": [text(300, 1), text(300, 2)], "heldout": [text(80, 3)],
                           "train_years": [1900, 1901], "heldout_years": [1902]})
    data = tmp_path / "p.json.gz"
    data.write_bytes(gzip.compress(json.dumps(presidents).encode()))
    out = tmp_path / "out"
    rc = qs.main(["--gguf", "tiny-llama", "--model-dir", str(tiny_dir), "--data", str(data), "--min-words", "0",
                  "--steps", "2", "--batch", "1", "--seq-len", "16", "--eval-seq-len", "16", "--ranks", "2,16",
                  "--targets", "q_proj,v_proj;all-linear", "--lrs", "1e-2,3e-2", "--sweep-users", "1",
                  "--lora-lrs", "1e-3,3e-3", "--lora-sweep-users", "1", "--compare-naive", "--out-dir", str(out),
                  "--adapter-dir", str(tmp_path / "adapters"), "--device", "cpu"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    m = res["methods"]
    want = {"base", "loraxs-r16-qv", "loraxs-r2-qv", "lora-r8-qv", "loraxs-r16-all", "loraxs-r2-all", "lora-r8-all",
            "naive-r16-qv"}
    assert set(m) == want and all(v["status"] == "done" for v in m.values())
    manifest = json.loads((tiny_dir / "manifest.json").read_text())
    assert m["loraxs-r16-qv"]["committed_factors"] and m["loraxs-r16-qv"]["factors"] == manifest["factors"]["sha256"]
    assert not m["loraxs-r2-all"]["committed_factors"] and m["loraxs-r2-all"]["modules"] == 14
    assert m["loraxs-r2-all"]["trainable_per_user"] == 14 * 2 * 2
    assert m["naive-r16-qv"]["lr"] == m["loraxs-r16-qv"]["lr"]
    assert set(m["loraxs-r2-qv"]["sweep"]) == {"0.01", "0.03"}
    # only the shipped set writes adapters (the demo users), one per president, into --adapter-dir
    assert sorted(p.name for p in (tmp_path / "adapters").glob("*.safetensors")) == ["alpha-one.safetensors",
                                                                                     "beta-two.safetensors"]
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert {(g["targets"], g["rank"]) for g in res["goal"]} == {(t, r) for t in ("q_proj,v_proj", "all-linear") for r in (2, 16)}
    for g in res["goal"]:
        assert g["bytes_ratio"] == pytest.approx(m[qs.method_key("lora", g["targets"], 8)]["bytes_per_user"]
                                                 / m[qs.method_key("loraxs", g["targets"], g["rank"])]["bytes_per_user"])
    assert len(res["compare_naive"]["users"]) == 2
    assert all(set(u["ppl"]) == want for u in res["users"])
