"""Factors learned from a population of users instead of the weight's own SVD.

`down` and `up` ship once with the base model, so they may come from many users' data and still
cost each user nothing. Here they span the directions in which plain LoRA moved the weights of
a set of *factor users* (EigenLoRAx / Per-Pcs style): train LoRA for every factor user (all in
one multi-user run), stack each module's updates ΔW_u, and keep the top-r left and right
singular directions of the stack:

    up   = U_r                      [out, r]   top-r eigenvectors of Σ_u ΔW_u ΔW_uᵀ
    down = diag(d) V_rᵀ             [r, in]    top-r eigenvectors of Σ_u ΔW_uᵀ ΔW_u

`d` weights direction i by √σ_i (σ from the input side) so that commoner directions take larger
steps, normalised so that the rows of `down` carry the same energy as the SVD factors' Σ_r Vᵀ
of that layer: a learning rate that suits one kind of factors suits the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .lora_xs import Factors
from .multi_lora import MultiUserLoraTrainer, inject_lora, lora_seed
from .job_io import UserTask
from .train import TrainConfig

POPULATION_LORA_RANK, POPULATION_LORA_ALPHA = 8, 16


@dataclass
class FactorUser:
    name: str
    train: object  # Blocks
    val: object  # Blocks (the user's own validation split: picks its rate and stops it early)


def population_basis(deltas: list[torch.Tensor], rank: int, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(down [r, in], up [out, r], σ [r]) of one module from the users' updates ΔW_u [out, in]."""
    if not deltas:
        raise ValueError("no updates to build factors from")
    D = torch.stack([d.double() for d in deltas])  # [U, out, in]
    out_f, in_f = D.shape[1:]
    if rank > min(out_f, in_f):
        raise ValueError(f"rank {rank} exceeds the layer's size {out_f} x {in_f}")
    left = torch.einsum("uoi,upi->op", D, D)  # Σ ΔW ΔWᵀ [out, out]
    right = torch.einsum("uoi,uoj->ij", D, D)  # Σ ΔWᵀ ΔW [in, in]
    ev_l, U = torch.linalg.eigh(left)
    ev_r, V = torch.linalg.eigh(right)
    U, V = U[:, -rank:].flip(1), V[:, -rank:].flip(1)  # top-r, largest first
    sigma = ev_r[-rank:].flip(0).clamp(min=0).sqrt()
    # Signs: each up column's largest-|.| entry positive, and the paired down row turned to match
    # the population's mean update (so R near identity-like moves are not sign noise).
    s = torch.sign(U.gather(0, U.abs().argmax(0, keepdim=True))).squeeze(0)
    U = U * torch.where(s == 0, 1.0, s)
    mean = D.mean(0)
    t = torch.sign(torch.einsum("oi,or,ir->r", mean, U, V))
    V = V * torch.where(t == 0, 1.0, t)
    svd_energy = torch.linalg.svdvals(weight.double())[:rank].pow(2).sum()
    d = sigma.sqrt()
    d = d * (svd_energy / d.pow(2).sum().clamp(min=1e-30)).sqrt()
    return (d[:, None] * V.T).float().contiguous(), U.float().contiguous(), sigma.float()


def train_factor_users(model: nn.Module, names: list[str], users: list[FactorUser], lrs: list[float], steps: int,
                       batch: int, cfg: TrainConfig, seed: int = 0, log: Callable[[str], None] = print) -> dict[str, list[torch.Tensor]]:
    """LoRA r=8 for every factor user at every rate of `lrs` in one run; each user's update at the rate
    with its lowest validation loss. Returns module name -> [ΔW_u]. `model` is injected in place."""
    source = inject_lora(model, names, POPULATION_LORA_RANK, POPULATION_LORA_ALPHA)
    tasks = [UserTask(f"{u.name}@{lr:g}", u.train, u.val, steps, lr, lora_seed(seed, u.name), batch)
             for u in users for lr in lrs]
    trainer = MultiUserLoraTrainer(model, source, tasks, cfg)
    results = trainer.train()
    deltas: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for k, u in enumerate(users):
        rows = list(range(k * len(lrs), (k + 1) * len(lrs)))
        best = min(rows, key=lambda i: results[i].val_loss if results[i].val_loss is not None else math.inf)
        log(f"  factor user {u.name}: rate {lrs[best - rows[0]]:g}, best step {results[best].best_step}, "
            f"val ppl {math.exp(results[best].val_loss):.3f}" if results[best].val_loss is not None else f"  factor user {u.name}")
        for m, n in enumerate(names):
            deltas[n].append(trainer.delta(best, m).detach().cpu())
    return deltas


def population_factors(clean: nn.Module, deltas: dict[str, list[torch.Tensor]], rank: int, model_id: str,
                       description: str) -> Factors:
    """Factors of rank `rank` for every module of `deltas` (in its order); metadata says how they were made."""
    names = list(deltas)
    down, up, spectrum = {}, {}, []
    for n in names:
        weight = clean.get_submodule(n).weight.detach().cpu()
        down[n], up[n], sigma = population_basis(deltas[n], rank, weight)
        spectrum.append(float(sigma[-1] / sigma[0]) if sigma[0] > 0 else 0.0)
    users = len(next(iter(deltas.values())))
    meta = {"svd": "population", "factor_users": str(users), "factor_data": description,
            "population_lora": f"r={POPULATION_LORA_RANK},alpha={POPULATION_LORA_ALPHA}",
            "sigma_last_over_first_median": f"{sorted(spectrum)[len(spectrum) // 2]:.4f}", "model": model_id}
    return Factors(names, down, up, rank, meta, "")


def read_factor_data(path: str | Path, tokenizer, seq_len: int, max_tokens: int, seed: int = 0) -> list[FactorUser]:
    """Factor users from a JSON (or .json.gz) file `{"users": {name: [text, ...]}}`: each user's first
    `max_tokens` tokens as blocks, a seeded 10 % of them (at least one) its validation split."""
    import gzip
    import json

    from .data import DataError, split_blocks, text_blocks
    from .job_io import user_seed

    raw = Path(path).read_bytes()
    doc = json.loads(gzip.decompress(raw) if str(path).endswith(".gz") else raw)
    users = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(users, dict) or not users:
        raise DataError(f"{path}: expected {{\"users\": {{name: [text, ...]}}}} with at least one user")
    out = []
    for name, texts in users.items():
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise DataError(f"{path}: user {name!r}: expected a list of texts")
        blocks = text_blocks(tokenizer, texts, seq_len)
        n = max(1, min(len(blocks), max_tokens // seq_len))
        if n < 2:
            raise DataError(f"{path}: user {name!r} has {blocks.tokens} tokens; factor users need at least two "
                            f"blocks of {seq_len}")
        first = type(blocks)(blocks.ids[:n], blocks.mask[:n])
        train, val = split_blocks(first, max(0.1, 1.0 / n), user_seed(seed, name))
        out.append(FactorUser(name, train, val))
    return out
