"""prepare end to end on tiny-llama, tiny-bert and the real MiniLM (CPU): factors, ONNX export,
the numeric check, reference fixtures, factor reuse, and the errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from loraxs.format import load_adapter
from loraxs.export_onnx import merged_model, mean_pool_normalize
from loraxs.lora_xs import file_digest, load_factors
from loraxs.models import UnsupportedModelError, load_base, load_prepared
from loraxs.prepare import main as prepare_main


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    out = {}
    for preset in ("tiny-llama", "tiny-bert"):
        out[preset] = root / preset
        assert prepare_main(["--preset", preset, "--out", str(out[preset])]) == 0
    return out


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def session(folder: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-bert"])
def test_manifest_lists_every_file_with_its_digest(prepared, preset):
    folder = prepared[preset]
    m = manifest_of(folder)
    assert m["id"] == preset and m["schema_version"] == 1 and m["rank"] == 16
    want_targets = "q_proj,v_proj" if preset == "tiny-llama" else "query,value"
    assert m["targets"] == want_targets and len(m["modules"]) == 4  # 2 layers x 2 kinds
    assert m["io"]["R"] == {"name": "R", "shape": [4, 16, 16], "dtype": "float32"}
    assert m["onnx"] == {"file": "model.onnx", "data_file": "model.onnx.data", "opset": 18, "weights_dtype": "F32",
                         "quantization": "none"}
    names = {f["name"]: f for f in m["files"]}
    assert {"model.onnx", "model.onnx.data", "factors.safetensors", "tokenizer.json", "tokenizer_config.json",
            "reference.json", "reference-R.safetensors"} <= set(names)
    for f in m["files"]:
        assert f["sha256"] == file_digest(folder / f["name"]) and f["bytes"] == (folder / f["name"]).stat().st_size
    assert m["factors"]["sha256"] == names["factors.safetensors"]["sha256"]
    assert m["check"]["max_abs_error"] < 1e-4 and m["check"]["tolerance"] == 1e-3
    assert m["check"]["cases"] == 3 and m["check"]["runtime"] == "onnxruntime-cpu"


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-bert"])
def test_graph_io_and_relative_external_data(prepared, preset):
    folder = prepared[preset]
    g = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in g.input}
    outputs = [o.name for o in g.output]
    if preset == "tiny-llama":
        assert list(inputs) == ["input_ids", "attention_mask", "position_ids", "R", "past_key_values.0.key",
                                "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value"]
        assert outputs == ["logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value"]
        assert isinstance(inputs["past_key_values.0.key"][2], str)  # past length is dynamic
    else:
        assert list(inputs) == ["input_ids", "attention_mask", "token_type_ids", "R"]
        assert outputs == ["last_hidden_state", "sentence_embedding"]
    assert inputs["R"] == [4, 16, 16]
    assert all(isinstance(d, str) for d in inputs["input_ids"])  # batch and sequence dynamic
    assert "R" not in {t.name for t in g.initializer}  # R is a required input, never an initializer
    locations = {kv.value for t in g.initializer for kv in t.external_data if kv.key == "location"}
    assert locations == {"model.onnx.data"}


def test_tied_embedding_is_stored_once(prepared):
    folder = prepared["tiny-llama"]
    base = load_base("tiny-llama")
    params = sum(p.numel() for p in base.model.parameters()) * 4  # tied: embed_tokens counted once
    factor_bytes = sum(t.numel() * 4 for t in load_file(str(folder / "factors.safetensors")).values())
    data = (folder / "model.onnx.data").stat().st_size
    embedding = 49152 * 64 * 4
    assert data < params + factor_bytes + embedding // 2, (data, params, factor_bytes)


def test_onnx_matches_reference_fixtures_and_merged_weights(prepared):
    folder = prepared["tiny-llama"]
    ref = json.loads((folder / "reference.json").read_text())
    m = manifest_of(folder)
    assert ref["model"] == "tiny-llama" and ref["factors"] == m["factors"]["sha256"]
    assert [c["R"] for c in ref["cases"]] == ["zeros", "reference-R.safetensors#1", "reference-R.safetensors#2"]
    Rs = load_file(str(folder / "reference-R.safetensors"))
    sess = session(folder)
    base, factors, source, _ = load_prepared(folder)
    lasts = []
    for case in ref["cases"]:
        R = torch.zeros(4, 16, 16) if case["R"] == "zeros" else Rs[case["R"].split("#")[1]]
        if "adapter" in case:  # the same R as a real adapter file
            a = load_adapter(folder / case["adapter"], expect={"model": "tiny-llama", "factors": ref["factors"],
                                                                 "rank": 16, "modules": 4})
            assert np.array_equal(a.R, R.numpy())
        ids = np.array(case["input_ids"], dtype=np.int64)
        T = ids.shape[1]
        feeds = {"input_ids": ids, "attention_mask": np.ones((1, T), np.int64),
                 "position_ids": np.arange(T, dtype=np.int64)[None], "R": R.numpy()}
        for i in range(2):
            feeds[f"past_key_values.{i}.key"] = feeds[f"past_key_values.{i}.value"] = np.zeros((1, 2, 0, 16), np.float32)
        logits = sess.run(["logits"], feeds)[0][:, -1]
        assert np.abs(logits - np.array(case["logits_last"], np.float32)).max() < ref["tolerance"]
        lasts.append(logits)
        # Greedy tokens: first token is the argmax of the last logits.
        assert case["greedy"][0] == int(logits[0].argmax()) and len(case["greedy"]) == 8
        if case["R"] != "zeros":
            # Merged weights W + up·R·down in plain PyTorch give what the graph gives when fed R.
            merged = merged_model(base.model, R)
            with torch.no_grad():
                plain = merged(input_ids=torch.from_numpy(ids)).logits[:, -1].numpy()
            assert np.abs(plain - logits).max() < 1e-4
    assert np.abs(lasts[1] - lasts[0]).max() > 0.1 and np.abs(lasts[2] - lasts[1]).max() > 0.1
    assert ref["cases"][0]["greedy"] != ref["cases"][1]["greedy"]


def test_decode_step_with_past_equals_the_full_prefill(prepared):
    folder = prepared["tiny-llama"]
    sess = session(folder)
    R = np.random.default_rng(0).normal(0, 0.2, (4, 16, 16)).astype(np.float32)
    ids = np.array([[5, 900, 77, 4000, 12, 3]], np.int64)

    def run(x, past, start):
        T = x.shape[1]
        feeds = {"input_ids": x, "attention_mask": np.ones((1, start + T), np.int64),
                 "position_ids": np.arange(start, start + T, dtype=np.int64)[None], "R": R}
        for i in range(2):
            feeds[f"past_key_values.{i}.key"], feeds[f"past_key_values.{i}.value"] = past[2 * i], past[2 * i + 1]
        return sess.run(None, feeds)

    empty = [np.zeros((1, 2, 0, 16), np.float32)] * 4
    full = run(ids, empty, 0)
    part = run(ids[:, :5], empty, 0)
    step = run(ids[:, 5:], part[1:], 5)
    assert step[1].shape == (1, 2, 6, 16)
    assert np.abs(step[0][:, -1] - full[0][:, -1]).max() < 1e-4


def test_encoder_embedding_is_mean_pooled_and_normalised(prepared):
    folder = prepared["tiny-bert"]
    ref = json.loads((folder / "reference.json").read_text())
    sess = session(folder)
    for case in ref["cases"]:
        R = np.zeros((4, 16, 16), np.float32) if case["R"] == "zeros" else \
            load_file(str(folder / "reference-R.safetensors"))[case["R"].split("#")[1]].numpy()
        ids = np.array(case["input_ids"], np.int64)
        h, e = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                               "token_type_ids": np.zeros_like(ids), "R": R})
        assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
        assert np.allclose(e, h.mean(axis=1) / np.linalg.norm(h.mean(axis=1), axis=1, keepdims=True), atol=1e-5)
        assert np.abs(e - np.array(case["embedding"], np.float32)).max() < ref["tolerance"]
    # Padding rows do not leak into the pooled embedding.
    ids = np.array([[101, 7592, 2088, 102, 0, 0]], np.int64)
    mask = np.array([[1, 1, 1, 1, 0, 0]], np.int64)
    zeros = np.zeros((4, 16, 16), np.float32)
    _, padded = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids), "R": zeros})
    _, short = sess.run(None, {"input_ids": ids[:, :4], "attention_mask": mask[:, :4],
                               "token_type_ids": np.zeros((1, 4), np.int64), "R": zeros})
    assert np.abs(padded - short).max() < 1e-5


def test_factor_reuse_keeps_the_digest_and_recompute_is_deterministic(prepared, tmp_path):
    folder = prepared["tiny-bert"]
    digest = manifest_of(folder)["factors"]["sha256"]
    work = tmp_path / "tiny-bert"
    work.mkdir()
    (work / "factors.safetensors").write_bytes((folder / "factors.safetensors").read_bytes())
    prepare_main(["--preset", "tiny-bert", "--out", str(work), "--skip-export"])
    assert manifest_of(work)["factors"]["sha256"] == digest
    assert manifest_of(work)["onnx"] is None and manifest_of(work)["check"] is None
    prepare_main(["--preset", "tiny-bert", "--out", str(work), "--skip-export", "--recompute-factors"])
    assert manifest_of(work)["factors"]["sha256"] == digest  # same seed, same bytes
    prepare_main(["--preset", "tiny-bert", "--out", str(work), "--skip-export", "--rank", "8"])
    m = manifest_of(work)
    assert m["factors"]["sha256"] != digest and m["rank"] == 8 and load_factors(work / "factors.safetensors").rank == 8
    prepare_main(["--preset", "tiny-bert", "--out", str(work), "--skip-export", "--rank", "8", "--seed", "3"])
    assert manifest_of(work)["factors"]["sha256"] != m["factors"]["sha256"]  # other weights: recomputed


def test_load_prepared_checks_the_digest(prepared, tmp_path):
    folder = prepared["tiny-bert"]
    base, factors, source, manifest = load_prepared(folder)
    assert source.modules == 4 and source.rank == 16 and factors.digest == manifest["factors"]["sha256"]
    for name in ("factors.safetensors", "manifest.json"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    m = manifest_of(tmp_path)
    m["factors"]["sha256"] = "sha256:" + "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="does not match the manifest's sha256:0000"):
        load_prepared(tmp_path)


def test_bad_targets_rank_and_architecture_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="targets 'gate_proj_x' matched no linear layer"):
        prepare_main(["--preset", "tiny-bert", "--out", str(tmp_path / "a"), "--targets", "gate_proj_x", "--skip-export"])
    with pytest.raises(ValueError, match=r"--rank 65 is outside \[1, 64\]"):
        prepare_main(["--preset", "tiny-bert", "--out", str(tmp_path / "b"), "--rank", "65", "--skip-export"])
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UnsupportedModelError, match="supported: llama"):
        prepare_main(["--source", str(tmp_path / "gpt2"), "--out", str(tmp_path / "c")])
    with pytest.raises(SystemExit):  # argparse: unknown preset
        prepare_main(["--preset", "gpt-5"])


def test_train_step_asks_for_the_traced_graph(capsys):
    """SmolLM2 and Gemma skip the traced fp32 graph by default, but the step graph reads its weights
    file: --train-step turns it on, and refuses --no-fp32-graph with a message instead of skipping."""
    from loraxs.prepare import parse_args, wants_traced_graph

    assert not wants_traced_graph(parse_args(["--preset", "smollm2-135m"]))
    assert not wants_traced_graph(parse_args(["--preset", "gemma3-270m"]))
    assert wants_traced_graph(parse_args(["--preset", "smollm2-135m", "--fp32-graph"]))
    assert wants_traced_graph(parse_args(["--preset", "tiny-llama"]))
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--preset", "smollm2-135m", "--train-step", "1x8", "--no-fp32-graph"])
    assert exit_info.value.code == 2
    assert "--train-step reads the traced graph's weights file" in capsys.readouterr().err
    assert wants_traced_graph(parse_args(["--preset", "smollm2-135m", "--train-step", "1x8"]))


def test_all_linear_and_regex_targets(tmp_path):
    prepare_main(["--preset", "tiny-bert", "--out", str(tmp_path), "--targets", "all-linear", "--rank", "4", "--skip-export"])
    m = manifest_of(tmp_path)
    assert len(m["modules"]) == 12 and m["io"]["R"]["shape"] == [12, 4, 4]  # 6 linears x 2 layers
    assert m["modules"][0] == {"name": "encoder.layer.0.attention.self.query", "in": 64, "out": 64}
    prepare_main(["--preset", "tiny-bert", "--out", str(tmp_path), "--targets", r"re:.*layer\.1\..*dense",
                  "--rank", "4", "--skip-export"])
    assert [x["name"] for x in manifest_of(tmp_path)["modules"]] == [
        "encoder.layer.1.attention.output.dense", "encoder.layer.1.intermediate.dense", "encoder.layer.1.output.dense"]


def test_real_minilm_prepares_and_embeds_like_sentence_transformers(tmp_path):
    assert prepare_main(["--preset", "minilm-l6", "--out", str(tmp_path), "--no-reference"]) == 0
    m = manifest_of(tmp_path)
    assert m["io"]["R"]["shape"] == [12, 16, 16] and m["check"]["max_abs_error"] < 1e-4
    tok = load_base("minilm-l6").tokenizer
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    enc = tok(texts, padding=True, return_tensors="np")
    sess = session(tmp_path)
    _, e = sess.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                           "attention_mask": enc["attention_mask"].astype(np.int64),
                           "token_type_ids": enc["token_type_ids"].astype(np.int64),
                           "R": np.zeros((12, 16, 16), np.float32)})
    # Same as the plain model + mean pooling + L2 (what sentence-transformers computes).
    plain = load_base("minilm-l6")
    with torch.no_grad():
        h = plain.model(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state
    assert np.abs(mean_pool_normalize(h, torch.from_numpy(enc["attention_mask"])).numpy() - e).max() < 1e-5
    sim = e @ e.T
    assert sim[0, 1] > 0.6 > sim[0, 2]  # related sentences close, unrelated far: real weights


def test_weight_only_quantization_keeps_the_lora_branch_in_fp32(prepared):
    from loraxs.quantize import quantize

    folder = prepared["tiny-llama"]
    info = quantize(folder, bits=8, block_size=32, min_elements=0)
    assert info["quantized_nodes"] == 14  # 2 layers x (q, k, v, o, gate, up, down); not the 8 branch MatMuls
    g = onnx.load(str(folder / "model.q8.onnx"), load_external_data=False).graph
    ops = [n.op_type for n in g.node]
    assert "MatMulNBits" in ops and "Gemm" in ops  # the tied output layer stays fp32
    assert info["max_abs_error"] < 0.5 and info["argmax_agree"]
    # The branch is untouched: R still moves the quantized graph's logits as it moves fp32's.
    sess_q = ort.InferenceSession(str(folder / "model.q8.onnx"), providers=["CPUExecutionProvider"])
    sess_f = session(folder)
    R = load_file(str(folder / "reference-R.safetensors"))["1"].numpy()
    ids = np.array([[5, 900, 77, 4000]], np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(4, dtype=np.int64)[None]}
    for i in range(2):
        feeds[f"past_key_values.{i}.key"] = feeds[f"past_key_values.{i}.value"] = np.zeros((1, 2, 0, 16), np.float32)
    delta = [s.run(["logits"], {**feeds, "R": R})[0] - s.run(["logits"], {**feeds, "R": np.zeros_like(R)})[0]
             for s in (sess_f, sess_q)]
    assert np.abs(delta[0]).max() > 0.1 and np.abs(delta[0] - delta[1]).max() < 0.1 * np.abs(delta[0]).max()
