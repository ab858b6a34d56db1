"""ONNX export of a base model with the LoRA-XS branch inside the graph and one `R` input.

Decoder graph: input_ids, attention_mask, position_ids, R, past_key_values.{i}.key|value
-> logits, present.{i}.key|value. Encoder graph: input_ids, attention_mask, token_type_ids, R
-> last_hidden_state, sentence_embedding. Names and shapes: docs/contracts.md.

Recipe (toolchain notes): torch.onnx.export(dynamo=True, opset 18, external data), every
dimension dynamic except R's, eager attention, example sizes >= 2 so nothing specialises.
`down`/`up` are buffers and become initializers; R stays a required input (onnxruntime-web
rejects a fed initializer), zeros run the plain base model.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .lora_xs import RSource

OPSET = 18
ONNX_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
# Example sizes for tracing: all >= 2 so that no dynamic dimension is specialised to 0 or 1.
EXAMPLE_BATCH, EXAMPLE_SEQ, EXAMPLE_PAST = 2, 3, 5


def decoder_io(num_layers: int) -> tuple[list[str], list[str]]:
    inputs = ["input_ids", "attention_mask", "position_ids", "R"]
    outputs = ["logits"]
    for i in range(num_layers):
        inputs += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        outputs += [f"present.{i}.key", f"present.{i}.value"]
    return inputs, outputs


ENCODER_INPUTS = ["input_ids", "attention_mask", "token_type_ids", "R"]
ENCODER_OUTPUTS = ["last_hidden_state", "sentence_embedding"]


class TiedHead(nn.Module):
    """The output layer of a tied-embedding decoder, reading the embedding matrix as it is.

    `hidden @ E.T` exports as MatMul(hidden, Transpose(E)); constant folding then stores a
    transposed copy of E beside the original (+113 MB fp32 for SmolLM2). Gemm with transB=1
    reads E untransposed, and E stays one initializer shared with the token embedding.
    """

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, T, H = h.shape
        flat = h.reshape(B * T, H)
        zero = torch.zeros((), dtype=h.dtype)
        logits = torch.addmm(zero, flat, self.embedding.weight.t())  # Gemm(transB=1) [B*T, V]
        return logits.reshape(B, T, -1)


class DecoderForExport(nn.Module):
    """Flat KV-cache interface around a Llama-family causal LM with LoRA-XS injected."""

    def __init__(self, model: nn.Module, source: RSource):
        super().__init__()
        self.model = model
        self.source = source
        self.num_layers = model.config.num_hidden_layers
        tied = getattr(model.config, "tie_word_embeddings", False) and (
            model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        )
        self.head = TiedHead(model.model.embed_tokens) if tied else model.lm_head

    def forward(self, input_ids, attention_mask, position_ids, R, *past):
        from transformers import DynamicCache

        self.source.set(R)
        cache = DynamicCache(config=self.model.config)
        for i in range(self.num_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        logits = self.head(out.last_hidden_state)
        presents = []
        for i in range(self.num_layers):
            layer = out.past_key_values.layers[i]
            presents += [layer.keys, layer.values]
        return (logits, *presents)


def mean_pool_normalize(h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' Pooling(mean) + Normalize: mean over the mask, then L2."""
    m = attention_mask.unsqueeze(-1).to(h.dtype)  # [B, T, 1]
    summed = (h * m).sum(dim=1)  # [B, H]
    count = m.sum(dim=1).clamp_min(1e-9)  # [B, 1]
    return F.normalize(summed / count, p=2, dim=1)


class EncoderForExport(nn.Module):
    def __init__(self, model: nn.Module, source: RSource):
        super().__init__()
        self.model = model
        self.source = source

    def forward(self, input_ids, attention_mask, token_type_ids, R):
        self.source.set(R)
        h = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        return h, mean_pool_normalize(h, attention_mask)


def wrap(model: nn.Module, source: RSource, family: str) -> nn.Module:
    return DecoderForExport(model, source) if family == "decoder" else EncoderForExport(model, source)


def example_inputs(model: nn.Module, source: RSource, family: str, R: torch.Tensor | None = None):
    g = torch.Generator().manual_seed(0)
    c = model.config
    B, T, P = EXAMPLE_BATCH, EXAMPLE_SEQ, EXAMPLE_PAST
    if R is None:
        R = torch.randn((source.modules, source.rank, source.rank), generator=g) * 1e-2
    ids = torch.randint(3, c.vocab_size, (B, T), generator=g)
    if family == "encoder":
        return (ids, torch.ones(B, T, dtype=torch.int64), torch.zeros(B, T, dtype=torch.int64), R)
    kv, hd = c.num_key_value_heads, getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    past = []
    for _ in range(c.num_hidden_layers):
        past += [torch.randn(B, kv, P, hd, generator=g), torch.randn(B, kv, P, hd, generator=g)]
    pos = torch.arange(P, P + T).unsqueeze(0).expand(B, T).contiguous()
    return (ids, torch.ones(B, P + T, dtype=torch.int64), pos, R, *past)


def dynamic_shapes(family: str, num_layers: int):
    D = torch.export.Dim.DYNAMIC
    bt = {0: D, 1: D}
    if family == "encoder":
        return (bt, bt, bt, None)
    kv = {0: D, 2: D}
    return (bt, bt, bt, None, tuple([kv] * (2 * num_layers)))  # *past arrives as one tuple


def export(model: nn.Module, source: RSource, family: str, out_dir: str | Path, log=print) -> dict:
    """Writes model.onnx + model.onnx.data into out_dir; returns timing and sizes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / ONNX_FILE
    for p in (onnx_path, out_dir / DATA_FILE):
        if p.exists():
            p.unlink()
    wrapper = wrap(model, source, family).eval()
    num_layers = model.config.num_hidden_layers
    if family == "decoder":
        inputs, outputs = decoder_io(num_layers)
    else:
        inputs, outputs = ENCODER_INPUTS, ENCODER_OUTPUTS
    args = example_inputs(model, source, family)
    t0 = time.perf_counter()
    log(f"export: tracing {type(model).__name__} ({num_layers} layers, {source.modules} adapted modules) to ONNX opset {OPSET}")
    try:
        with torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                args,
                dynamo=True,
                opset_version=OPSET,
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes=dynamic_shapes(family, num_layers),
                optimize=True,
                verbose=False,
            )
    finally:
        source.set(None)
    log(f"export: traced in {time.perf_counter() - t0:.1f} s; saving")
    program.save(str(onnx_path), external_data=True)
    _strip_debug_info(onnx_path)
    seconds = time.perf_counter() - t0
    info = {
        "seconds": seconds,
        "onnx_bytes": onnx_path.stat().st_size,
        "data_bytes": (out_dir / DATA_FILE).stat().st_size,
        "inputs": inputs,
        "outputs": outputs,
    }
    log(f"export: {onnx_path} ({info['onnx_bytes'] / 1e6:.1f} MB graph + {info['data_bytes'] / 1e6:.1f} MB data) in {seconds:.1f} s")
    _check_external_data(onnx_path)
    return info


def _strip_debug_info(onnx_path: Path) -> None:
    """Drops the exporter's per-node metadata (stack traces with this checkout's file paths, FX names):
    debugging aids that make the graph's bytes, and so the manifest's digest, depend on the machine."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    for node in m.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    m.graph.doc_string = ""
    m.doc_string = ""
    onnx.save(m, str(onnx_path))


def _check_external_data(onnx_path: Path) -> None:
    """Every external tensor must live in `model.onnx.data`, referenced by a relative path."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    locations = set()
    for t in m.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location":
                locations.add(kv.value)
    bad = {loc for loc in locations if loc != DATA_FILE or os.path.isabs(loc)}
    if bad:
        raise RuntimeError(f"{onnx_path}: external data locations {sorted(bad)}; expected only {DATA_FILE!r}")


# ---------------------------------------------------------------------------------------------
# Numeric check: onnxruntime (CPU) against PyTorch, and against the merged weights W + up·R·down.

CHECK_TOLERANCE = 1e-3  # fp32 graph vs fp32 eager: observed errors are ~1e-6; 1e-3 catches wiring bugs
CHECK_R_STD = 0.2  # large enough that the branch moves the outputs far beyond the tolerance


def check_R(modules: int, rank: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((modules, rank, rank), generator=g) * CHECK_R_STD


def merged_model(model: nn.Module, R: torch.Tensor) -> nn.Module:
    """A copy of `model` whose LoRA-XS layers are plain nn.Linear with weight W + up·R[i]·down."""
    import copy

    from .lora_xs import LoraXSLinear, _get_parent, merged_weight

    merged = copy.deepcopy(model)
    for name, m in [(n, m) for n, m in merged.named_modules() if isinstance(m, LoraXSLinear)]:
        lin = m.base
        lin.weight = nn.Parameter(merged_weight(lin.weight.data, m.down, m.up, R[m.index]), requires_grad=False)
        parent, child = _get_parent(merged, name)
        setattr(parent, child, lin)
    return merged


def _ort_session(onnx_path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])


def _run(sess, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [torch.from_numpy(x) for x in sess.run(None, {k: v.numpy() for k, v in feeds.items()})]


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def _decoder_feeds(ids, mask, pos, R, past, num_layers):
    feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": pos, "R": R}
    for i in range(num_layers):
        feeds[f"past_key_values.{i}.key"] = past[2 * i]
        feeds[f"past_key_values.{i}.value"] = past[2 * i + 1]
    return feeds


def verify(model: nn.Module, source: RSource, family: str, onnx_path: str | Path, seed: int = 0, log=print) -> dict:
    """Runs the ONNX graph and PyTorch on the same inputs; returns the manifest's `check` block.

    Cases: R = zeros (plain base), a random non-zero R, and that R merged into the base weights
    (PyTorch, no branch) against the graph fed R. Decoders: a prefill of two rows (the second
    left-padded) and one decode step fed the prefill's present keys/values. Raises over tolerance.
    """
    onnx_path = Path(onnx_path)
    sess = _ort_session(onnx_path)
    c = model.config
    g = torch.Generator().manual_seed(seed + 1)
    R = check_R(source.modules, source.rank, seed + 2)
    zeros = torch.zeros_like(R)
    wrapper = wrap(model, source, family).eval()
    errors: dict[str, float] = {}
    B, T = 2, 7
    ids = torch.randint(3, c.vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.int64)
    with torch.no_grad():
        if family == "decoder":
            L = c.num_hidden_layers
            kv, hd = c.num_key_value_heads, getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
            mask[1, :2] = 0  # left padding
            pos = (mask.cumsum(-1) - 1).clamp_min(0)
            empty = [torch.zeros(B, kv, 0, hd) for _ in range(2 * L)]
            nxt = torch.randint(3, c.vocab_size, (B, 1), generator=g)
            mask2 = torch.cat([mask, torch.ones(B, 1, dtype=torch.int64)], dim=1)
            pos2 = pos[:, -1:] + 1
            outs = {}
            for label, r in (("zeros", zeros), ("random", R)):
                feeds = _decoder_feeds(ids, mask, pos, r, empty, L)
                ref = wrapper(*feeds.values())
                got = _run(sess, feeds)
                valid = mask.bool()
                errors[f"prefill/{label}/logits"] = _maxdiff(ref[0][valid], got[0][valid])
                errors[f"prefill/{label}/present"] = max(_maxdiff(a, b) for a, b in zip(ref[1:], got[1:]))
                feeds2 = _decoder_feeds(nxt, mask2, pos2, r, got[1:], L)
                ref2 = wrapper(*feeds2.values())
                got2 = _run(sess, feeds2)
                errors[f"decode/{label}/logits"] = _maxdiff(ref2[0], got2[0])
                errors[f"decode/{label}/present"] = max(_maxdiff(a, b) for a, b in zip(ref2[1:], got2[1:]))
                outs[label] = got[0][valid]
            source.set(None)
            merged = merged_model(model, R)
            mref = merged(input_ids=ids, attention_mask=mask, position_ids=pos).logits
            errors["merged/random/logits"] = _maxdiff(mref[mask.bool()], outs["random"])
        else:
            mask[1, -2:] = 0  # right padding, as tokenizers pad encoders
            tt = torch.zeros(B, T, dtype=torch.int64)
            outs = {}
            for label, r in (("zeros", zeros), ("random", R)):
                feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt, "R": r}
                ref = wrapper(*feeds.values())
                got = _run(sess, feeds)
                valid = mask.bool()
                errors[f"{label}/last_hidden_state"] = _maxdiff(ref[0][valid], got[0][valid])
                errors[f"{label}/sentence_embedding"] = _maxdiff(ref[1], got[1])
                outs[label] = got
            source.set(None)
            merged = merged_model(model, R)
            h = merged(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
            errors["merged/random/last_hidden_state"] = _maxdiff(h[mask.bool()], outs["random"][0][mask.bool()])
            errors["merged/random/sentence_embedding"] = _maxdiff(mean_pool_normalize(h, mask), outs["random"][1])
            outs = {k: v[0] for k, v in outs.items()}  # the effect is measured before pooling
    source.set(None)
    effect = _maxdiff(outs["random"], outs["zeros"])
    worst = max(errors.values())
    log(f"check: onnxruntime-cpu vs pytorch, max abs error {worst:.2e} (tolerance {CHECK_TOLERANCE:g}); "
        f"R moves the outputs by up to {effect:.2e}")
    for k, v in errors.items():
        log(f"  {k}: {v:.2e}")
    if worst > CHECK_TOLERANCE:
        bad = {k: v for k, v in errors.items() if v > CHECK_TOLERANCE}
        raise RuntimeError(f"ONNX check failed: max abs error {worst:.3e} over tolerance {CHECK_TOLERANCE:g} in {bad}")
    if effect <= 10 * CHECK_TOLERANCE:
        raise RuntimeError(f"ONNX check is vacuous: a random R (std {CHECK_R_STD}) moved the outputs by only {effect:.2e}")
    return {
        "runtime": "onnxruntime-cpu",
        "reference": "pytorch",
        "max_abs_error": worst,
        "tolerance": CHECK_TOLERANCE,
        "cases": 3,
    }
