"""The trainer's fast path: what it switches on, for which models, and how.

Features (each can be named alone, for benchmarks; `TrainConfig.fast` turns on all that apply):
- fused-branch: the LoRA-XS branch as two products with the factors cast once (lora_xs.LoraXSLinear._fused);
- chunked-loss: output layer + cross-entropy in token chunks, gradient computed on the way (fused_loss);
- no-mask: right-padded rows are fed without an attention mask. Under causal attention a real
  token only sees earlier positions, which are all real, so its output is the same; the loss
  already ignores padded positions. Without a mask, attention runs the fused causal kernel;
- no-sync: the host never waits for the GPU inside a step: inputs go through pinned memory,
  the positions that carry a loss are found from the host's copy of the mask, and per-user
  losses are read back in batches (every 32 steps, before evaluations, at the end), so the CPU
  queues the next step while the GPU still runs this one;
- compile: each decoder layer through torch.compile (elementwise work fused, fewer launches),
  and the loss chunks too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .fused_loss import chunk_nll_and_grad, linear_cross_entropy

FEATURES = ("fused-branch", "chunked-loss", "no-mask", "no-sync", "compile")
COMPILE_OPTIONS: dict = {}  # default: static shapes first, one dynamic recompile when batch sizes vary; tests swap in a codegen-free backend


def pick_features(fast: bool, compile: bool | None, features: tuple[str, ...] | None, device: torch.device) -> frozenset[str]:
    """The features a run uses: an explicit list wins; otherwise all of them when `fast`
    (compile only on CUDA unless asked: on a CPU its minutes of compilation rarely pay off)."""
    if features is not None:
        unknown = sorted(set(features) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown fast-path features {unknown}; known: {', '.join(FEATURES)}")
        return frozenset(features)
    if not fast:
        return frozenset()
    on = set(FEATURES) - {"compile"}
    if compile or (compile is None and device.type == "cuda"):
        on.add("compile")
    return frozenset(on)


def decoder_parts(model: nn.Module) -> tuple[nn.Module, nn.Linear] | None:
    """(transformer body, output layer) of a causal LM whose logits are plain `body(x) @ headᵀ`,
    or None when the model does anything else to its logits (bias, scaling, soft-capping)."""
    get_body, get_head = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
    if get_body is None or get_head is None:
        return None
    body, head = get_body(), get_head()
    config = getattr(model, "config", None)
    if body is None or body is model or not isinstance(head, nn.Linear) or head.bias is not None:
        return None
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None) not in (None, 1, 1.0):
        return None
    return body, head


def right_padded(mask: torch.Tensor) -> bool:
    """Every row is ones then zeros (never a real token after padding)."""
    return bool((mask[:, 1:] <= mask[:, :-1]).all())


class CausalLMLoss:
    """Per-example next-token NLL sums of a causal LM, through chunked-loss and/or no-mask."""

    def __init__(self, body: nn.Module, head: nn.Linear, compute_dtype: torch.dtype, chunked: bool, no_mask: bool,
                 to_device: Callable[[torch.Tensor], torch.Tensor], compiled: bool = False):
        self.body, self.chunked, self.no_mask = body, chunked, no_mask
        self.weight = head.weight.detach().to(compute_dtype)  # frozen: cast once
        self.compute_dtype = compute_dtype
        self.to_device = to_device
        self.chunk_fn = torch.compile(chunk_nll_and_grad, **COMPILE_OPTIONS) if compiled else None

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, mask_host: torch.Tensor,
                 example_weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        B, T = ids.shape
        attention = None if self.no_mask and right_padded(mask_host) else mask
        hidden = self.body(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state  # [B, T, H]
        # Positions whose next token is real, found on the host (no GPU round trip): flat b·T + t.
        valid = (mask_host[:, 1:] * mask_host[:, :-1]).bool()
        b, t = valid.nonzero(as_tuple=True)
        pos = self.to_device(b * T + t)
        rows = self.to_device(b)
        counts = self.to_device(valid.sum(1).float())
        h = hidden.reshape(B * T, -1).index_select(0, pos).to(self.compute_dtype)  # [N, H]: real positions only
        targets = ids.reshape(-1).index_select(0, pos + 1)
        w = example_weights.index_select(0, rows) if example_weights is not None else torch.zeros(len(b), device=ids.device)
        if self.chunked:
            objective, nll = linear_cross_entropy(h, self.weight, targets, w, chunk_fn=self.chunk_fn)
        else:
            nll = torch.nn.functional.cross_entropy((h @ self.weight.T).float(), targets, reduction="none")
            objective = (nll * w).sum()
        sums = torch.zeros(B, device=ids.device).index_add_(0, rows, nll.detach().float())
        return sums, counts, objective if example_weights is not None else None


BASE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def store_frozen_base(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Stores the frozen base model's parameters in `dtype` (bf16 on a GPU: half the memory and
    traffic; autocast runs the products in bf16 either way). Buffers — the LoRA-XS factors,
    rotary tables — keep their dtype, so R still multiplies fp32 factors in the plain path."""
    for p in model.parameters():
        if p.requires_grad:
            raise ValueError("store_frozen_base: the model has trainable parameters; only a frozen base may be cast")
        p.data = p.data.to(dtype)
    return model


def base_dtype(name: str, device: str) -> torch.dtype:
    """`auto` = bf16 on CUDA, fp32 elsewhere (CPUs have no fast bf16 products)."""
    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    if name not in BASE_DTYPES:
        raise ValueError(f"base dtype {name!r} is not one of auto, {', '.join(BASE_DTYPES)}")
    return BASE_DTYPES[name]


def compile_layers(model: nn.Module) -> Callable[[], None]:
    """torch.compile each decoder layer in place; returns the undo. Layers share one compiled code
    (same class), so a 30-layer model compiles once per shape."""
    body = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(body, "layers", None)
    if layers is None:
        return lambda: None
    import torch._dynamo

    # One compiled entry per (shape, grad mode, model): a worker with several models and batch
    # sizes needs more than the default 8 before dynamo gives up and runs eagerly.
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, name, max(getattr(cfg, name), 64))
    for layer in layers:
        layer.compile(**COMPILE_OPTIONS)

    def undo() -> None:
        for layer in layers:
            layer._compiled_call_impl = None

    return undo
