"""The fused client graph (loraxs.client_graph, export_client): against PyTorch through prepare's
reference fixtures, Q4 blocks against their own dequantized weights, the GGUF row order, the
split data files, and the errors for models it cannot build."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from loraxs.block_quant import Q4Weight, quantize_q4_1
from loraxs.client_graph import Branch, build_client_graph
from loraxs.export_client import check, export_variant, quantize, write_split
from loraxs.gguf_llama import from_state_dict, unpermute_rows
from loraxs.models import load_base
from loraxs.prepare import main as prepare_main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-llama")
    assert prepare_main(["--preset", "tiny-llama", "--out", str(out)]) == 0
    return out


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def tiny_weights():
    base = load_base("tiny-llama")
    state = {k: v.detach().float().numpy() for k, v in base.model.state_dict().items()}
    return from_state_dict(state, base.model.config.to_dict())


def quantized_case(tiny: Path, seed: int):
    """The tiny model's weights in Q4 blocks with its branch, a random R, its config and a prompt."""
    from loraxs.export_client import load_branch

    m = manifest_of(tiny)
    R = np.random.default_rng(seed).normal(0, 0.5, m["io"]["R"]["shape"]).astype(np.float32)
    return quantize(tiny_weights()), load_branch(tiny, m), R, m["config"], [5, 17, 300, 4000, 12, 9]


def dequantized(q):
    """The same weights as fp32 (what a Q4 graph must compute)."""
    deq = tiny_weights()
    deq.linear = {k: v.dequantize() for k, v in q.linear.items()}
    deq.embedding = q.embedding.dequantize()
    return deq


def logits_of(model_or_path, R: np.ndarray | None, ids: list[int], layers: int, kv: int, hd: int) -> np.ndarray:
    src = model_or_path if isinstance(model_or_path, (str, Path)) else model_or_path.SerializeToString()
    sess = ort.InferenceSession(str(src) if isinstance(src, Path) else src, providers=["CPUExecutionProvider"])
    feeds = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
    if R is not None:
        feeds["R"] = R
    for i in range(layers):
        for k in ("key", "value"):
            feeds[f"past_key_values.{i}.{k}"] = np.zeros((1, kv, 0, hd), np.float32)
    return sess.run(["logits"], feeds)[0]


def test_prepare_lists_the_fused_graph_first_and_it_matches_pytorch(tiny):
    m = manifest_of(tiny)
    assert [g["name"] for g in m["graphs"]] == ["fused", "fusedw", "fp32"]
    assert m["graphs"][1]["devices"] == ["webgpu"] and m["graphs"][1]["check"]["greedy_equal"] is True
    fused = m["graphs"][0]
    listed = {f["name"]: f["role"] for f in m["files"]}
    assert listed[fused["file"]] == "onnx" and all(listed[d] == "onnx-data" for d in fused["data_files"])
    assert "position_ids" not in fused["inputs"] and "R" in fused["inputs"]
    # Greedy decoding with the KV cache reproduces PyTorch's tokens; logits within fp32 rounding.
    assert fused["check"]["greedy_equal"] is True and fused["check"]["max_abs_error"] < 1e-4
    assert fused["check"]["cases"] == 3


def test_fixed_cache_graph_is_written_on_request_and_matches_pytorch(tiny, tmp_path):
    """fusedws (graph capture's fixed KV cache, fed one token per run): written by --static, checked
    against PyTorch's reference cases (greedy tokens equal), and kept out of the manifest, whose
    client loop does not run it."""
    import shutil

    from loraxs.export_client import main as export_main

    folder = tmp_path / "m"
    shutil.copytree(tiny, folder)
    assert export_main([str(folder), "--static"]) == 0
    m = manifest_of(folder)
    assert "fusedws" not in [g["name"] for g in m["graphs"]] and (folder / "model.fusedws.onnx").is_file()
    assert not any(f["name"].startswith("model.fusedws") for f in m["files"])
    res = check(folder, folder / "model.fusedws.onnx", m, log=lambda *_: None)
    assert res["greedy_equal"] is True and res["max_abs_error"] < 1e-4


def test_the_check_sees_a_broken_graph(tiny, tmp_path):
    # The same weights with the adapter left out cannot match the adapted reference cases.
    m = manifest_of(tiny)
    for name in ("reference.json", "reference-R.safetensors", "factors.safetensors", "manifest.json"):
        (tmp_path / name).write_bytes((tiny / name).read_bytes())
    entry, _ = export_variant(tmp_path, m, tiny_weights(), "plain", adapter=False, log=lambda *_: None)
    result = check(tmp_path, tmp_path / entry["file"], m, log=lambda *_: None)
    assert result["greedy_equal"] is False and result["max_abs_error"] > 1e-2


def test_q4_graph_computes_its_own_blocks_exactly(tiny):
    """MatMulNBits packing, scales and the per-block offset: the Q4 graph equals an fp32 graph of
    the dequantized weights (same branch, random R)."""
    q, branch, R, c, ids = quantized_case(tiny, 0)
    assert isinstance(q.linear["model.layers.0.mlp.up_proj"], Q4Weight)
    deq = dequantized(q)
    a = logits_of(build_client_graph(q, branch), R, ids, c["num_layers"], c["num_kv_heads"], c["head_dim"])
    b = logits_of(build_client_graph(deq, branch), R, ids, c["num_layers"], c["num_kv_heads"], c["head_dim"])
    zero = logits_of(build_client_graph(q, branch), np.zeros_like(R), ids, c["num_layers"], c["num_kv_heads"], c["head_dim"])
    assert np.abs(a - b).max() < 1e-4 * max(1.0, np.abs(b).max())
    assert np.abs(a - zero).max() > 1e-2  # R reaches the output


def optimized_op_counts(model: onnx.ModelProto, tmp_path: Path) -> dict[str, int]:
    """Node types onnxruntime runs once its session has folded the constant nodes."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    ops: dict[str, int] = {}
    for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


def test_doubled_q4_graph_computes_the_same_blocks_with_the_offsets_inside_matmulnbits(tiny, tmp_path):
    """doubled: the residual stream carried twice, each Q4_1 offset a block of the MatMulNBits
    weight. It equals an fp32 graph of the dequantized weights (random R) and the other Q4 graph;
    once onnxruntime has folded its constants it runs one MatMulNBits per packed projection and the
    adapter's two matmuls per adapted one (R folded into `down` once per run), none for the offsets;
    it downloads no more bytes."""
    q, branch, R, c, ids = quantized_case(tiny, 2)
    layers, kv, hd = c["num_layers"], c["num_kv_heads"], c["head_dim"]
    doubled = build_client_graph(q, branch, doubled=True)
    a = logits_of(doubled, R, ids, layers, kv, hd)
    b = logits_of(build_client_graph(dequantized(q), branch), R, ids, layers, kv, hd)
    assert np.abs(a - b).max() < 1e-4 * max(1.0, np.abs(b).max())
    zero = logits_of(doubled, np.zeros_like(R), ids, layers, kv, hd)
    assert np.abs(a - zero).max() > 1e-2  # R reaches the output
    ops = optimized_op_counts(doubled, tmp_path)
    adapted = len({n.split(".self_attn")[0] for n in branch.names})  # one packed QKV per layer
    assert ops["MatMulNBits"] == 4 * layers
    # per QKV the adapter's `down`·R and `up`; R multiplied into every `down` at once; the output head
    assert ops["MatMul"] == 2 * adapted + 2
    assert ops["Add"] == adapted
    undoubled = build_client_graph(q, branch)
    assert optimized_op_counts(undoubled, tmp_path)["MatMul"] > ops["MatMul"]
    size = lambda m: sum(len(t.raw_data) for t in m.graph.initializer)  # noqa: E731
    assert size(doubled) <= size(undoubled)
    # export_client builds a 4-bit model's WebGPU graph this way by itself (SmolLM2's q4w), not the CPU one
    from loraxs.export_client import WEBGPU_DEVICES

    m = manifest_of(tiny)
    for name in ("factors.safetensors", "manifest.json"):
        (tmp_path / name).write_bytes((tiny / name).read_bytes())
    webgpu, _ = export_variant(tmp_path, m, q, "q4w", devices=WEBGPU_DEVICES, attention="webgpu", log=lambda *_: None)
    cpu, _ = export_variant(tmp_path, m, q, "q4", devices=["cpu"], log=lambda *_: None)
    assert "residual stream carried twice" in webgpu["quantization"] and "twice" not in cpu["quantization"]
    heads = [a.i for n in onnx.load(str(tmp_path / webgpu["file"]), load_external_data=False).graph.node
             if n.op_type == "GroupQueryAttention" for a in n.attribute if a.name == "num_heads"]
    assert heads == [2 * c["num_attention_heads"]] * layers
    with pytest.raises(ValueError, match="doubled=True: it needs q4_matmul='nbits'"):
        build_client_graph(q, branch, q4_matmul="folded", doubled=True)
    with pytest.raises(ValueError, match="doubled=True: it needs every linear weight in 4-bit blocks"):
        build_client_graph(dequantized(q), branch, doubled=True)


def test_folded_q4_graph_computes_the_same_blocks_and_ships_them_4_bit(tiny):
    """q4f: the 4-bit codes, scales and minimums folded into fp32 MatMuls by constant nodes equal an
    fp32 graph of the dequantized weights; no MatMulNBits, and the linear weights travel as packed
    4-bit bytes (half a byte per weight)."""
    q, branch, R, c, ids = quantized_case(tiny, 1)
    deq = dequantized(q)
    folded = build_client_graph(q, branch, q4_matmul="folded")
    a = logits_of(folded, R, ids, c["num_layers"], c["num_kv_heads"], c["head_dim"])
    b = logits_of(build_client_graph(deq, branch), R, ids, c["num_layers"], c["num_kv_heads"], c["head_dim"])
    assert np.abs(a - b).max() < 1e-4 * max(1.0, np.abs(b).max())
    assert not any(n.op_type == "MatMulNBits" for n in folded.graph.node)
    codes = {t.name: t for t in folded.graph.initializer if t.name.endswith(".qweight_t")}
    linear = sum(np.prod(w.shape) for w in q.linear.values())
    assert sum(len(t.raw_data) for t in codes.values()) == linear // 2
    assert all(t.data_type == onnx.TensorProto.UINT8 for t in codes.values())
    with pytest.raises(ValueError, match="q4_matmul"):
        build_client_graph(q, branch, q4_matmul="dequantized")


def test_run_dequantized_graph_equals_the_folded_one_and_onnxruntime_cannot_fold_it(tiny, tmp_path):
    """q4r (dequantize="run", the WASM graph of a model too large to fold): the same logits as q4f,
    and after onnxruntime's full optimization the session still holds the 8-bit and 4-bit codes and
    rebuilds the fp32 weights in each run (DequantizeLinear nodes left; no fp32 weight initializers
    beyond q4f's constants), which is what keeps Gemma 3 270M under onnxruntime-web's 4 GB heap."""
    q, branch, R, c, ids = quantized_case(tiny, 2)
    folded = build_client_graph(q, branch, q4_matmul="folded")
    run = build_client_graph(q, branch, q4_matmul="folded", dequantize="run")
    a = logits_of(run, R, ids, c["num_layers"], c["num_kv_heads"], c["head_dim"])
    b = logits_of(folded, R, ids, c["num_layers"], c["num_kv_heads"], c["head_dim"])
    assert np.abs(a - b).max() < 1e-5 * max(1.0, np.abs(b).max())

    def optimized(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(tmp_path / name)
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return onnx.load(str(tmp_path / name))

    def fp32_weight_bytes(model: onnx.ModelProto) -> int:
        return sum(int(np.prod(t.dims)) * 4 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)

    linear = sum(int(np.prod(w.shape)) for w in q.linear.values())
    opt_run, opt_folded = optimized(run, "run.onnx"), optimized(folded, "folded.onnx")
    assert any(n.op_type == "DequantizeLinear" for n in opt_run.graph.node)
    assert fp32_weight_bytes(opt_folded) - fp32_weight_bytes(opt_run) >= 4 * linear
    with pytest.raises(ValueError, match="dequantize"):
        build_client_graph(q, branch, q4_matmul="folded", dequantize="later")


def test_output_heads_of_a_q8_table_agree(tiny):
    """The tied Q8 head three ways, same codes: MatMul on the folded fp32 copy (`matmul`),
    Gemm(transB) on it (`gemm`) and the 8-bit MatMulNBits with int8 activations in HEAD_PARTS
    parts (`nbits`, the q4 graph's): logits within fp32 rounding of each other, the nbits head
    reads the embedding's own codes (no fp32 table, no extra copy of the codes), and one part alone
    (the kernel's plain int8 rounding) is far coarser."""
    from loraxs import client_graph

    q, branch, R, c, ids = quantized_case(tiny, 2)
    run = lambda g: logits_of(g, R, ids, c["num_layers"], c["num_kv_heads"], c["head_dim"])  # noqa: E731
    ref = run(build_client_graph(q, branch))
    scale = max(1.0, np.abs(ref).max())
    assert np.abs(run(build_client_graph(q, branch, head="gemm")) - ref).max() < 1e-5 * scale
    nbits = build_client_graph(q, branch, head="nbits")
    err = np.abs(run(nbits) - ref).max()
    assert err < 2e-5 * scale
    head = [n for n in nbits.graph.node if n.name == "lm_head/MatMulNBits"]
    assert len(head) == 1 and head[0].input[1] == "model.embed_tokens.qweight"
    assert not any(n.name.startswith("lm_head/") and n.op_type in ("Gemm", "Transpose", "MatMul") for n in nbits.graph.node)
    assert all(len(t.raw_data) < 1024 for t in nbits.graph.initializer if t.name.startswith("lm_head"))
    try:
        client_graph.HEAD_PARTS = 1
        one = np.abs(run(build_client_graph(q, branch, head="nbits")) - ref).max()
    finally:
        client_graph.HEAD_PARTS = 3
    assert one > 20 * err
    with pytest.raises(ValueError, match="head"):
        build_client_graph(q, branch, head="int8")


def test_q4_1_blocks_round_like_ggml_and_keep_offsets():
    w = np.random.default_rng(1).normal(0.3, 1.0, (8, 64)).astype(np.float32)
    q = quantize_q4_1(w)
    err = np.abs(q.dequantize() - w)
    step = (w.reshape(8, 2, 32).max(-1) - w.reshape(8, 2, 32).min(-1)) / 15
    assert (err.reshape(8, 2, 32) <= step[..., None] * 0.5 + 1e-3).all()
    const = quantize_q4_1(np.full((1, 32), 0.75, np.float32))  # d = 0: every weight is the offset
    assert np.allclose(const.dequantize(), 0.75, atol=1e-3)


def test_gguf_rows_go_back_to_hugging_face_order():
    def llama_cpp_permute(w, n_head):  # what llama.cpp's converter does to q_proj / k_proj
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    w = np.arange(24 * 3, dtype=np.float32).reshape(24, 3)
    for heads in (1, 2, 3):
        assert np.array_equal(llama_cpp_permute(w, heads)[unpermute_rows(heads, 24)], w)


def test_data_files_hold_whole_tensors_under_the_limit_and_are_reproducible(tiny, tmp_path):
    model = build_client_graph(quantize(tiny_weights()), None)
    names = write_split(model, tmp_path, "model.x", chunk_bytes=1 << 20)
    per_file: dict[str, int] = {}
    for t in model.graph.initializer:
        loc = {e.key: e.value for e in t.external_data}.get("location")
        if loc:
            per_file[loc] = per_file.get(loc, 0) + 1
    assert len(names) > 1 and sorted(per_file) == sorted(names)
    # Over the limit only when one tensor alone is bigger (the Q8 embedding here).
    assert all((tmp_path / n).stat().st_size <= 1 << 20 or per_file[n] == 1 for n in names)
    first = {n: hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in [*names, "model.x.onnx"]}
    names2 = write_split(build_client_graph(quantize(tiny_weights()), None), tmp_path, "model.x", chunk_bytes=1 << 20)
    assert names2 == names
    assert first == {n: hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in [*names, "model.x.onnx"]}


def test_models_it_cannot_build_are_refused_clearly(tiny):
    w = tiny_weights()
    m = manifest_of(tiny)
    r = m["rank"]
    down, up = np.zeros((r, 64), np.float32), np.zeros((64, r), np.float32)
    with pytest.raises(ValueError, match="cannot place"):
        build_client_graph(w, Branch(["model.embed_tokens"], [down], [up]))
    uneven = Branch(["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj"],
                    [down] * 3, [up, np.zeros((32, r), np.float32), up])
    with pytest.raises(ValueError, match="same number of modules"):
        build_client_graph(w, uneven)
    with pytest.raises(ValueError, match="decoder graphs"):
        export_variant(tiny, {**m, "family": "encoder"}, w, "x")
