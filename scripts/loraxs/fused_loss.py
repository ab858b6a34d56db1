"""Output layer + next-token cross-entropy in chunks, for a frozen output layer.

A 49k-word vocabulary makes the logits of a 32 × 512 batch 1.6 GB in bf16 (3.2 GB once upcast
for the loss), written, read back for the softmax and again for its gradient. The output layer
is frozen, so the backward pass needs only dL/dhidden: each chunk of tokens computes its logits,
its losses and its gradient with respect to the hidden states at once, and the logits of the
chunk are dropped before the next one. Peak memory is one chunk's logits; the arithmetic is the
same two matrix products as the plain path.
"""

from __future__ import annotations

import torch

DEFAULT_CHUNK_ELEMENTS = 1 << 27  # logits per chunk (512 MB in fp32): big enough to keep the GPU busy


def chunk_nll_and_grad(h: torch.Tensor, weight: torch.Tensor, t: torch.Tensor, w: torch.Tensor,
                       need_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One chunk, written for torch.compile: the softmax, its scaling and the one-hot subtraction
    fuse into one pass over the logits between the two products."""
    logits = (h @ weight.T).float()
    lse = torch.logsumexp(logits, dim=-1)
    nll = lse - logits.gather(1, t[:, None]).squeeze(1)
    if not need_grad:
        return nll, None
    g = torch.exp(logits - lse[:, None]) * w[:, None]
    g = g.scatter_add(1, t[:, None], -w[:, None])
    return nll, (g.to(weight.dtype) @ weight).to(h.dtype)


def _chunk_in_place(h, weight, t, w, need_grad):
    """The same arithmetic in eager mode, reusing the logits' memory for the gradient."""
    logits = (h @ weight.T).float()  # [c, V]
    lse = torch.logsumexp(logits, dim=-1)
    nll = lse - logits.gather(1, t[:, None]).squeeze(1)
    if not need_grad:
        return nll, None
    g = logits.sub_(lse[:, None]).exp_().mul_(w[:, None])  # d(Σ w·nll)/dlogits = w · (softmax − onehot)
    g.scatter_add_(1, t[:, None], -w[:, None])
    return nll, (g.to(weight.dtype) @ weight).to(h.dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, token_weights, chunk, chunk_fn):  # noqa: D401 - autograd signature
        n = hidden.shape[0]
        nll = torch.empty(n, dtype=torch.float32, device=hidden.device)
        need_grad = ctx.needs_input_grad[0]
        grad_hidden = torch.empty_like(hidden) if need_grad else None
        for k in range(0, n, chunk):
            c_nll, c_grad = chunk_fn(hidden[k : k + chunk], weight, targets[k : k + chunk], token_weights[k : k + chunk], need_grad)
            nll[k : k + chunk] = c_nll
            if need_grad:
                grad_hidden[k : k + chunk] = c_grad
        ctx.save_for_backward(grad_hidden if need_grad else None)
        ctx.mark_non_differentiable(nll)
        return (nll * token_weights).sum(), nll

    @staticmethod
    def backward(ctx, grad_loss, _grad_nll):
        (grad_hidden,) = ctx.saved_tensors
        if grad_hidden is None:
            return None, None, None, None, None, None
        return grad_hidden * grad_loss.to(grad_hidden.dtype), None, None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, token_weights: torch.Tensor,
                         chunk: int | None = None, chunk_fn=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ token_weights · nll, nll per token) for logits = hidden @ weightᵀ and the given targets.

    hidden [N, H] (its dtype is the compute dtype of the products), weight [V, H] frozen (no
    gradient is computed for it), targets [N] int64, token_weights [N] float32. The first result
    is differentiable with respect to `hidden`; the per-token NLL (fp32) is for reporting.
    `chunk_fn` computes one chunk (default: eager, in place; pass a compiled
    `chunk_nll_and_grad` to fuse its elementwise work).
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} do not multiply")
    if targets.shape != hidden.shape[:1] or token_weights.shape != hidden.shape[:1]:
        raise ValueError(f"targets {tuple(targets.shape)} / token_weights {tuple(token_weights.shape)} "
                         f"must have one entry per hidden row ({hidden.shape[0]})")
    if chunk is None:
        chunk = max(1, DEFAULT_CHUNK_ELEMENTS // weight.shape[0])
    w = weight if weight.dtype == hidden.dtype else weight.to(hidden.dtype)
    return _LinearCrossEntropy.apply(hidden, w, targets, token_weights.float(), int(chunk), chunk_fn or _chunk_in_place)
