"""A Llama-family GGUF's weights and shape, read with numpy alone (no PyTorch, no dequantizing).

Q4_1 linear weights stay in their blocks (`block_quant.Q4Weight`), the Q8_0 token embedding in
its own (`Q8Weight`), norms as float32. llama.cpp stores q_proj and k_proj rows permuted for its
interleaved rotary embedding; they are put back in Hugging Face order here, so module outputs,
LoRA-XS factors and the graph's (half-split) rotary agree with transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .block_quant import BLOCK, Q4Weight, Q8Weight, from_q4_1

# Hugging Face module suffix -> GGUF tensor name inside block i.
LINEAR_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


@dataclass
class LlamaShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    rms_eps: float
    rope_theta: float
    max_positions: int


@dataclass
class LlamaWeights:
    """Everything the client graph needs; linear weights are [out, in] like nn.Linear."""

    shape: LlamaShape
    embedding: Q8Weight | np.ndarray  # [vocab, hidden]; also the output head (tied)
    final_norm: np.ndarray
    attn_norm: list[np.ndarray] = field(default_factory=list)
    ffn_norm: list[np.ndarray] = field(default_factory=list)
    linear: dict[str, Q4Weight | np.ndarray] = field(default_factory=dict)  # "model.layers.{i}.<suffix>"


def unpermute_rows(n_heads: int, rows: int) -> np.ndarray:
    """Row order undoing llama.cpp's rotary permutation (its `permute(w, n_head)`)."""
    idx = np.arange(rows).reshape(n_heads, 2, rows // n_heads // 2).swapaxes(1, 2).reshape(rows)
    return np.argsort(idx)


def _f16(raw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(raw).view(np.float16).astype(np.float32)


def _q4_1(data: np.ndarray, rows: int, cols: int) -> Q4Weight:
    blocks = data.reshape(rows, cols // BLOCK, 20)  # f16 d, f16 m, 16 bytes of nibbles
    d = _f16(blocks[..., 0:2]).reshape(rows, -1)
    m = _f16(blocks[..., 2:4]).reshape(rows, -1)
    qs = blocks[..., 4:20]
    q = np.concatenate([qs & 0xF, qs >> 4], axis=-1).reshape(rows, cols)  # elements j and j + 16
    return from_q4_1(q, d, m)


def _q8_0(data: np.ndarray, rows: int, cols: int) -> Q8Weight:
    blocks = data.reshape(rows, cols // BLOCK, 34)  # f16 d, 32 int8
    d = _f16(blocks[..., 0:2]).reshape(rows, -1)
    q = np.ascontiguousarray(blocks[..., 2:34]).view(np.int8).reshape(rows, cols)
    return Q8Weight(q, d)


def _field(reader, key: str):
    f = reader.fields.get(key)
    if f is None:
        raise ValueError(f"GGUF has no {key}")
    return f.parts[f.data[0]][0].item()


def read_gguf(path: str | Path) -> LlamaWeights:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    arch = reader.fields["general.architecture"]
    arch = bytes(arch.parts[arch.data[0]]).decode()
    if arch != "llama":
        raise ValueError(f"{path}: architecture {arch!r}; the client graph builder reads llama GGUFs")
    tensors = {t.name: t for t in reader.tensors}
    hidden = int(_field(reader, "llama.embedding_length"))
    heads = int(_field(reader, "llama.attention.head_count"))
    shape = LlamaShape(
        hidden=hidden,
        intermediate=int(_field(reader, "llama.feed_forward_length")),
        layers=int(_field(reader, "llama.block_count")),
        heads=heads,
        kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
        head_dim=hidden // heads,
        vocab=int(tensors["token_embd.weight"].shape[1]),
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        rope_theta=float(_field(reader, "llama.rope.freq_base")),
        max_positions=int(_field(reader, "llama.context_length")),
    )
    if "output.weight" in tensors:
        raise ValueError(f"{path}: an untied output head is not supported by the client graph builder")

    def load(name: str):
        t = tensors[name]
        cols, rows = (int(x) for x in t.shape[:2]) if len(t.shape) > 1 else (int(t.shape[0]), 1)
        kind = t.tensor_type.name
        if kind == "Q4_1":
            return _q4_1(np.asarray(t.data), rows, cols)
        if kind == "Q8_0":
            return _q8_0(np.asarray(t.data), rows, cols)
        if kind == "F32":
            return np.asarray(t.data, dtype=np.float32).reshape(rows, cols) if rows > 1 else np.asarray(t.data, np.float32)
        raise ValueError(f"{path}: tensor {name} is {kind}; the builder reads Q4_1, Q8_0 and F32")

    w = LlamaWeights(shape=shape, embedding=load("token_embd.weight"), final_norm=load("output_norm.weight"))
    for i in range(shape.layers):
        w.attn_norm.append(load(f"blk.{i}.attn_norm.weight"))
        w.ffn_norm.append(load(f"blk.{i}.ffn_norm.weight"))
        for suffix, gname in LINEAR_NAMES.items():
            t = load(f"blk.{i}.{gname}.weight")
            if suffix in ("self_attn.q_proj", "self_attn.k_proj"):
                n = heads if suffix.endswith("q_proj") else shape.kv_heads
                order = unpermute_rows(n, t.shape[0])
                t = t.rows(order) if isinstance(t, Q4Weight) else t[order]
            w.linear[f"model.layers.{i}.{suffix}"] = t
    return w


def from_state_dict(state: dict[str, np.ndarray], config: dict) -> LlamaWeights:
    """A transformers LlamaForCausalLM state dict (numpy, fp32) and its config, weights unquantized."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    shape = LlamaShape(
        hidden=hidden, intermediate=config["intermediate_size"], layers=config["num_hidden_layers"], heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads, head_dim=config.get("head_dim") or hidden // heads,
        vocab=config["vocab_size"], rms_eps=float(config["rms_norm_eps"]),
        rope_theta=float(config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta", 10000.0)),
        max_positions=config["max_position_embeddings"])
    if "lm_head.weight" in state and not np.array_equal(state["lm_head.weight"], state["model.embed_tokens.weight"]):
        raise ValueError("an untied output head is not supported by the client graph builder")
    w = LlamaWeights(shape=shape, embedding=state["model.embed_tokens.weight"], final_norm=state["model.norm.weight"])
    for i in range(shape.layers):
        w.attn_norm.append(state[f"model.layers.{i}.input_layernorm.weight"])
        w.ffn_norm.append(state[f"model.layers.{i}.post_attention_layernorm.weight"])
        for suffix in LINEAR_NAMES:
            name = f"model.layers.{i}.{suffix}"
            # A model with the LoRA-XS branch injected keeps the frozen weight as `<module>.base`.
            w.linear[name] = state[f"{name}.weight"] if f"{name}.weight" in state else state[f"{name}.base.weight"]
    return w
