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

Shapes (SHAPE_POLICY): compiled code is specialised on what it is traced with, so a worker whose
rounds bring 1 or 32 users, 4 or 400 rows, would compile again for every new batch. Instead the
compiled parts see one small fixed set of graphs whatever the round holds:
- the row dimension is symbolic from the first trace: every decoder layer's batch of rows (hidden
  states, the per-example R, a mask if any) and every loss chunk's tokens are marked dynamic
  (torch._dynamo.maybe_mark_dynamic), so one graph serves any number of rows ≥ MIN_ROWS; the
  sequence length and the model's own sizes stay static (the kernels keep them as constants);
- a batch of fewer than MIN_ROWS rows (one user with batch_size 1, the tail of an evaluation)
  is padded with copies of its last row whose weight is zero: no loss, no gradient, and dropped
  from the results (size 1 would be a constant of its own graph);
- the decoder layers share one graph: the LoRA-XS module's row of R (`index`, an int attribute,
  read with `select`) is a symbolic int instead of a constant of one graph per layer, and the
  factors' cast cache is filled before the first trace.
What remains distinct: training and evaluation (grad mode), the first layer (its input needs no
gradient; rows 0 and 1 of R are constants, as sizes 0 and 1 are) and the rest, the loss chunk
with and without its gradient, and the sequence length.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .fused_loss import chunk_nll_and_grad, linear_cross_entropy

FEATURES = ("fused-branch", "chunked-loss", "no-mask", "no-sync", "compile")
COMPILE_OPTIONS: dict = {}  # inductor by default; tests swap in a codegen-free backend
SHAPE_POLICY = "rows-dynamic-1"  # what the compiled graphs are specialised on (above); part of the compile cache's key
MIN_ROWS = 2  # fewer rows are padded: a dimension of size 1 is specialised by torch.compile


def mark_rows_dynamic(*tensors: torch.Tensor | None, rows: int | None = None) -> None:
    """Marks dimension 0 (the rows) of each tensor as dynamic for the next torch.compile trace;
    only tensors with `rows` rows when given, and never a dimension below MIN_ROWS."""
    import torch._dynamo

    for t in tensors:
        if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] >= MIN_ROWS and (rows is None or t.shape[0] == rows):
            torch._dynamo.maybe_mark_dynamic(t, 0)


def dynamic_rows(fn: Callable) -> Callable:
    """fn(h, weight, t, w, need_grad) (a compiled loss chunk) with its token rows marked dynamic;
    a chunk of one token is padded to MIN_ROWS with a zero-weight row (dropped again)."""

    def call(h, weight, t, w, need_grad):
        n = h.shape[0]
        if n < MIN_ROWS:
            pad = MIN_ROWS - n
            h = torch.cat([h, h.new_zeros(pad, h.shape[1])])
            t = torch.cat([t, t.new_zeros(pad)])
            w = torch.cat([w, w.new_zeros(pad)])
        mark_rows_dynamic(h, t, w)
        nll, grad = fn(h, weight, t, w, need_grad)
        return nll[:n], grad[:n] if grad is not None else None

    return call


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
        self.chunk_fn = dynamic_rows(torch.compile(chunk_nll_and_grad, **COMPILE_OPTIONS)) if compiled else None

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
    """torch.compile each decoder layer in place (shapes: SHAPE_POLICY); returns the undo. The
    layers share one compiled graph (per grad mode), whatever the number of rows."""
    body = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = getattr(body, "layers", None)
    if layers is None:
        return lambda: None
    import torch._dynamo

    from .lora_xs import LoraXSLinear

    # One compiled entry per (grad mode, first layer or not, sequence length, model): a worker
    # with several models and sequence lengths needs more than the default 8.
    cfg = torch._dynamo.config
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    setattr(cfg, name, max(getattr(cfg, name), 64))
    # The LoRA-XS modules' `index` (their row of R) as a symbolic int: one graph for all layers.
    unspec_before = cfg.allow_unspec_int_on_nn_module
    cfg.allow_unspec_int_on_nn_module = True
    adapted = [m for m in model.modules() if isinstance(m, LoraXSLinear)]
    sources = {id(m.source): m.source for m in adapted}.values()
    for m in adapted:  # the cast factors exist before the first trace (an empty cache is another graph)
        m._factors_in(m.source.compute_dtype or m.base.weight.dtype)

    def marking(compiled: Callable) -> Callable:
        def call(*args, **kwargs):
            hidden = args[0] if args else kwargs.get("hidden_states")
            if isinstance(hidden, torch.Tensor) and hidden.dim() > 0:
                # batch-major tensors only: a 1-D one (cache_position [T]) with as many entries as rows is not
                tensors = (*args, *kwargs.values(), *(s.R for s in sources))
                mark_rows_dynamic(*(t for t in tensors if isinstance(t, torch.Tensor) and t.dim() >= 2), rows=hidden.shape[0])
            return compiled(*args, **kwargs)

        return call

    for layer in layers:
        layer._compiled_call_impl = marking(torch.compile(layer._call_impl, **COMPILE_OPTIONS))

    def undo() -> None:
        cfg.allow_unspec_int_on_nn_module = unspec_before
        for layer in layers:
            layer._compiled_call_impl = None

    return undo
