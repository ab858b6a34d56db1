"""Plain LoRA (PEFT's parametrisation) for many users in one batch.

y = x Wᵀ + (alpha / r) · (x Aᵀ) Bᵀ with A [r, in] Kaiming-uniform and B [out, r] zero at the
start, exactly as `peft.LoraConfig(r, lora_alpha, lora_dropout=0)` builds it; but every example
of a batch carries its own user's A and B, gathered from per-module tables [users, ...]. That
lets the quality benchmark train its LoRA peer with the same machinery as LoRA-XS (per-user
schedule, clip, validation and early stopping, all users in one run) instead of one PEFT run per
user, and lets `population` read many users' updates at once. `test_multi_lora.py` checks one
user's steps against PEFT itself.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .lora_xs import _get_parent
from .job_io import UserTask, user_seed
from .train import MultiUserTrainer, TrainConfig


class LoraSource:
    """Per-example (A, B) of every adapted module for the current forward pass."""

    def __init__(self, shapes: list[tuple[int, int]], rank: int, alpha: float):
        self.shapes = shapes  # (in, out) per module, in module order
        self.modules = len(shapes)
        self.rank = rank
        self.scaling = alpha / rank
        self.current: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.fused = False  # read and written by the trainer; the LoRA branch has one form only
        self.compute_dtype: torch.dtype | None = None

    def set(self, pairs: list[tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        self.current = pairs

    def init_tables(self, seeds: list[int]) -> list[torch.Tensor]:
        """[A_0, B_0, A_1, B_1, ...]: A [U, r, in] as PEFT initialises it (per user seed), B [U, out, r] zero."""
        tables = []
        for fan_in, fan_out in self.shapes:
            A = torch.empty(len(seeds), self.rank, fan_in)
            for u, seed in enumerate(seeds):
                torch.manual_seed(seed)
                nn.init.kaiming_uniform_(A[u], a=math.sqrt(5))
            tables += [A, torch.zeros(len(seeds), fan_out, self.rank)]
        return tables


class MultiLoraLinear(nn.Module):
    def __init__(self, base: nn.Linear, index: int, source: LoraSource):
        super().__init__()
        self.base, self.index, self.source = base, index, source

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.source.current is None:
            return y
        A, B = self.source.current[self.index]  # [batch, r, in], [batch, out, r]
        xb = x.reshape(x.shape[0], -1, x.shape[-1])
        h = torch.bmm(torch.bmm(xb, A.transpose(1, 2).to(xb.dtype)), B.transpose(1, 2).to(xb.dtype))
        return y + (h * self.source.scaling).view(y.shape).to(y.dtype)


def inject_lora(model: nn.Module, names: list[str], rank: int, alpha: float) -> LoraSource:
    """Wraps each named nn.Linear in a MultiLoraLinear sharing one LoraSource; freezes the model."""
    for p in model.parameters():
        p.requires_grad_(False)
    shapes = []
    for i, name in enumerate(names):
        parent, child = _get_parent(model, name)
        base = getattr(parent, child)
        if not isinstance(base, nn.Linear):
            raise ValueError(f"module {name!r} is {type(base).__name__}, not nn.Linear")
        shapes.append((base.in_features, base.out_features))
    source = LoraSource(shapes, rank, alpha)
    for i, name in enumerate(names):
        parent, child = _get_parent(model, name)
        setattr(parent, child, MultiLoraLinear(getattr(parent, child), i, source))
    return source


class MultiUserLoraTrainer(MultiUserTrainer):
    """MultiUserTrainer with per-user (A, B) tables in place of the R table (A drawn from each task's seed)."""

    def __init__(self, model: nn.Module, source: LoraSource, tasks: list[UserTask], cfg: TrainConfig):
        super().__init__(model, source, "decoder", tasks, cfg)
        self.params = [nn.Parameter(t.to(self.device)) for t in source.init_tables([t.seed for t in tasks])]
        self.table = self.params[0]
        self.opt = type(self.opt)(self.params, cfg.betas, cfg.eps, cfg.weight_decay)

    def _bind(self, rows: torch.Tensor) -> None:
        p = self.params
        self.source.set([(p[2 * i][rows], p[2 * i + 1][rows]) for i in range(len(p) // 2)])

    def delta(self, u: int, module: int) -> torch.Tensor:
        """The weight update ΔW [out, in] that user `u`'s kept adapter adds to module `module`."""
        A, B = self.kept[u][2 * module], self.kept[u][2 * module + 1]
        return self.source.scaling * (B @ A)


def lora_seed(seed: int, user: str) -> int:
    return user_seed(seed, f"lora:{user}")
