"""prepare --factors population / --factors-from on tiny-llama: the manifest says how the factors were made,
bad factor data is refused with a clear message, and an adapter on the SVD factors no longer matches."""

from __future__ import annotations

import json

import pytest

from loraxs import prepare
from loraxs.data import DataError
from loraxs.lora_xs import load_factors

WORDS = "the union is strong and the people are free to choose their own way of life under law".split()


def factor_data(path, users: int = 3, words: int = 900):
    doc = {"users": {f"u{k}": [" ".join(WORDS[(i * (k + 1) + k) % len(WORDS)] for i in range(words))]
                     for k in range(users)}}
    path.write_text(json.dumps(doc))
    return path


def run(out, *extra):
    return prepare.prepare(prepare.parse_args(["--preset", "tiny-llama", "--out", str(out), "--device", "cpu",
                                               "--skip-export", "--no-reference", *extra]))


def test_population_factors_are_built_recorded_and_reused(tmp_path):
    svd_dir, pop_dir = tmp_path / "svd", tmp_path / "pop"
    run(svd_dir)
    data = factor_data(tmp_path / "users.json")
    run(pop_dir, "--factors", "population", "--factor-data", str(data), "--factor-tokens", "512")
    m = json.loads((pop_dir / "manifest.json").read_text())
    svd_m = json.loads((svd_dir / "manifest.json").read_text())
    assert m["factors"]["svd"]["method"] == "population" and m["factors"]["svd"]["factor_users"] == 3
    assert "users.json" in m["factors"]["svd"]["factor_data"]
    assert m["factors"]["sha256"] != svd_m["factors"]["sha256"]  # adapters pinned to the SVD set no longer match
    f = load_factors(pop_dir / "factors.safetensors")
    assert f.metadata["svd"] == "population" and f.names == [x["name"] for x in m["modules"]]
    before = (pop_dir / "factors.safetensors").read_bytes()
    run(pop_dir)  # a plain prepare keeps the population set it finds
    assert (pop_dir / "factors.safetensors").read_bytes() == before
    run(pop_dir, "--factors", "svd")  # asking for the SVD set replaces it
    assert json.loads((pop_dir / "manifest.json").read_text())["factors"]["sha256"] == svd_m["factors"]["sha256"]


def test_factors_from_imports_a_set_made_elsewhere_and_refuses_a_mismatch(tmp_path):
    src, dest, other = tmp_path / "src", tmp_path / "dest", tmp_path / "other"
    run(src, "--factors", "population", "--factor-data", str(factor_data(tmp_path / "u.json")), "--factor-tokens", "512")
    run(dest, "--factors-from", str(src / "factors.safetensors"))
    m = json.loads((dest / "manifest.json").read_text())
    assert m["factors"]["svd"]["method"] == "population"
    assert load_factors(dest / "factors.safetensors").down.keys() == load_factors(src / "factors.safetensors").down.keys()
    run(other, "--rank", "2")
    with pytest.raises(ValueError, match="rank 2 and 4 modules; this model needs rank 16"):
        run(dest, "--factors-from", str(other / "factors.safetensors"))


def test_bad_factor_data_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs --factor-data"):
        run(tmp_path / "a", "--factors", "population")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"people": {}}))
    with pytest.raises(DataError, match="expected"):
        run(tmp_path / "b", "--factors", "population", "--factor-data", str(bad))
    bad.write_text(json.dumps({"users": {"a": "not a list"}}))
    with pytest.raises(DataError, match="user 'a': expected a list of texts"):
        run(tmp_path / "c", "--factors", "population", "--factor-data", str(bad))
    short = factor_data(tmp_path / "short.json", users=1, words=20)
    with pytest.raises(DataError, match="at least two blocks"):
        run(tmp_path / "d", "--factors", "population", "--factor-data", str(short))
