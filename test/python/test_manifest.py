"""manifest.py on the shared manifest fixtures: same verdicts, paths and codes as the zod schema."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from loraxs.format import AdapterFormatError, decode_adapter
from loraxs.manifest import (
    Manifest,
    ManifestError,
    expectations_for,
    load_manifest,
    validate_manifest,
    write_manifest,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CASES = json.loads((FIXTURES / "manifests" / "expected.json").read_text())["cases"]


def load(name: str) -> dict:
    return json.loads((FIXTURES / "manifests" / name).read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_manifest_fixture(case):
    d = load(case["file"])
    issues = validate_manifest(d)
    if case["valid"]:
        assert issues == []
        e = expectations_for(Manifest.from_dict(d))
        want = case["expectations"]
        assert {k: v for k, v in asdict(e).items() if v is not None} == want
        return
    got = {(i.path, i.code) for i in issues}
    for want in case["issues"]:
        assert (want["path"], want["code"]) in got, issues
    with pytest.raises(ManifestError) as err:
        Manifest.from_dict(d)
    assert case["issues"][0]["path"] in str(err.value)


def test_committed_smollm2_manifest_loads(repo_root):
    m = load_manifest(repo_root / "models" / "smollm2-135m" / "manifest.json")
    e = expectations_for(m)
    assert (e.model, e.rank, e.modules, e.hidden) == ("smollm2-135m", 16, len(m.modules), None)


def test_post_init_validates_with_the_offending_value():
    d = load("decoder.json")
    d["rank"] = 999
    with pytest.raises(ManifestError) as e:
        Manifest(**d)
    assert "rank" in str(e.value) and "999" in str(e.value)


def test_write_then_load_round_trips(tmp_path):
    d = load("encoder.json")
    write_manifest(tmp_path / "manifest.json", d)
    assert json.loads((tmp_path / "manifest.json").read_text()) == d
    assert load_manifest(tmp_path / "manifest.json").to_dict() == d
    d["files"] = []
    with pytest.raises(ManifestError):
        write_manifest(tmp_path / "bad.json", d)
    assert not (tmp_path / "bad.json").exists()


def test_expectations_accept_matching_adapters_and_refuse_others():
    llama = expectations_for(load("decoder.json"))
    bert = expectations_for(load("encoder.json"))
    adapters = FIXTURES / "adapters"
    assert decode_adapter((adapters / "ts-f16.safetensors").read_bytes(), llama).model == "tiny-llama"
    assert decode_adapter((adapters / "py-head-f32.safetensors").read_bytes(), bert).head.hidden == 4
    with pytest.raises(AdapterFormatError) as e:
        decode_adapter((adapters / "ts-f16.safetensors").read_bytes(), bert)
    assert e.value.code == "model_mismatch"


def test_onnx_train_round_trips_and_stays_absent_when_not_exported(tmp_path):
    with_train = Manifest.from_dict(load("decoder-train.json"))
    assert with_train.to_dict()["onnx_train"]["shapes"] == {"batch": 1, "seq": 128}
    plain = Manifest.from_dict(load("decoder.json"))
    assert "onnx_train" not in plain.to_dict()
    write_manifest(tmp_path / "manifest.json", with_train)
    assert load_manifest(tmp_path / "manifest.json").onnx_train == with_train.onnx_train


def test_population_factors_validate_like_the_typescript_schema():
    d = load("decoder.json")
    d["factors"]["svd"] = {"method": "population", "seed": 0, "factor_users": 16, "factor_data": "sotu+brown factor users"}
    assert validate_manifest(d) == []
    d["factors"]["svd"]["method"] = "learned"
    assert [(i.path, i.code) for i in validate_manifest(d)] == [("factors.svd.method", "invalid")]
    d["factors"]["svd"].update(method="population", factor_users=-1)
    assert [(i.path, i.code) for i in validate_manifest(d)] == [("factors.svd.factor_users", "invalid")]


@pytest.mark.parametrize("model", ["smollm2-135m", "gemma3-270m"])
def test_every_shipped_demo_user_decodes_against_its_models_manifest(repo_root, model):
    """npm start seeds models/<id>/adapters/*.safetensors as they are: each must be valid for its own model
    (id, factor set, rank, modules) and refused by the other model's expectations."""
    m = load_manifest(repo_root / "models" / model / "manifest.json")
    other = load_manifest(repo_root / "models" / ("gemma3-270m" if model == "smollm2-135m" else "smollm2-135m") / "manifest.json")
    demo = sorted((repo_root / "models" / model / "adapters").glob("*.safetensors"))
    assert len(demo) == 3
    for f in demo:
        assert decode_adapter(f.read_bytes(), expectations_for(m)).factors == m.factors["sha256"]
        with pytest.raises(AdapterFormatError):
            decode_adapter(f.read_bytes(), expectations_for(other))


def test_smollm2_demo_users_match_the_committed_factors_and_an_older_set_is_refused(repo_root):
    """The shipped factor set changed (population factors); an adapter pinned to the earlier SVD set must
    fail with factors_mismatch, never load silently against factors it was not trained on."""
    m = load_manifest(repo_root / "models" / "smollm2-135m" / "manifest.json")
    e = expectations_for(m)
    demo = sorted((repo_root / "models" / "smollm2-135m" / "adapters").glob("*.safetensors"))
    assert len(demo) == 3 and all(decode_adapter(f.read_bytes(), e).factors == m.factors["sha256"] for f in demo)
    old = (FIXTURES / "pinned" / "smollm2-svd-factors-barack-obama.safetensors").read_bytes()
    with pytest.raises(AdapterFormatError) as err:
        decode_adapter(old, e)
    assert err.value.code == "factors_mismatch"
