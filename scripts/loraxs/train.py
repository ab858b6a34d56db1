"""Train LoRA-XS adapters (only R, plus a classification head for encoders) for many users at once.

One run trains a set of users together. Their adapters live in one table R [users, M, r, r]
(one nn.Parameter); every example of a batch gathers its own user's row (`table[user_ids]`,
shape [B, M, r, r]) into the model's shared RSource, so one forward/backward of the frozen
base model serves every user in the batch. Each user keeps its own data stream, loss,
step count, learning-rate schedule, gradient clip and early stopping, so a user's adapter is
the one it would get trained alone (same data order, same steps), up to float rounding.

    python -m loraxs.train --model-dir models/smollm2-135m --data alice.json bob.json --out-dir out
    npm run train -- --model-dir models/tiny-llama --data notes.json --steps 100 --device cpu

A data file is a job's data JSON ({"kind": "text", "texts": [...]} or {"kind": "labels",
"examples": [...]}), optionally wrapped as {"data": ..., "options": {...}}; the user id is the
file's stem unless --user is given.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .data import Blocks, job_defaults, parse_job_data, parse_options
from .fast_path import MIN_ROWS, CausalLMLoss, base_dtype, compile_layers, decoder_parts, pick_features, store_frozen_base
from .job_io import Examples, UserResult, UserTask, created_now, make_task, save_result
from .lora_xs import RSource, init_R


@dataclass
class TrainConfig:
    # optimisation (AdamW on R, warm-up then cosine to min_lr_frac · lr)
    weight_decay: float = 0.0  # R is tiny and starts at ~0: decay only pulls it back to the base model
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_frac: float = 0.05  # of each user's steps
    min_lr_frac: float = 0.1
    grad_clip: float = 1.0  # per user: one user's outlier batch never scales another's step
    head_lr: float = 1e-2  # encoder heads read an L2-normalised embedding: they need larger steps
    # held-out split and early stopping (per user)
    val_frac: float = 0.0
    eval_every: int = 50
    patience: int = 3  # evaluations without improvement before a user stops
    # Score the starting adapter too: a user whose validation loss never beats the base model
    # keeps the start (R ~ 0), so early stopping never ships an adapter worse than no adapter.
    eval_at_start: bool = True
    eval_batch: int = 16
    # compute
    device: str = "cpu"
    autocast: bool = True  # bf16 autocast on CUDA; CPU always runs fp32
    max_batch: int = 256  # examples in one forward (users × per-user batch), split into chunks above
    progress: bool = True
    # fast path (docs/training.md): chunked output layer + loss, cached low-precision factors, no
    # attention mask for right-padded causal rows; False = the plain path (the reference)
    fast: bool = True
    compile: bool | None = None  # torch.compile the decoder layers; None = on CUDA only
    features: tuple[str, ...] | None = None  # an explicit subset of fast_path.FEATURES (benchmarks)



class Stream:
    """A user's example order: seeded random permutations, one per epoch, drawn k at a time."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.g = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(n, generator=self.g)
        self.pos = 0

    def take(self, k: int) -> torch.Tensor:
        out = []
        while k > 0:
            if self.pos == self.n:
                self.perm, self.pos = torch.randperm(self.n, generator=self.g), 0
            part = self.perm[self.pos : self.pos + k]
            out.append(part)
            self.pos += len(part)
            k -= len(part)
        return torch.cat(out)


def lr_at(step: int, steps: int, lr: float, cfg: TrainConfig) -> float:
    """Warm-up then cosine; `step` counts from 1."""
    warmup = max(1, round(cfg.warmup_frac * steps)) if cfg.warmup_frac > 0 else 0
    if step <= warmup:
        return lr * step / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    min_lr = cfg.min_lr_frac * lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


class TableAdamW:
    """AdamW over tensors whose first axis is the user, as one vectorized step for the whole table.

    Same arithmetic as torch.optim.AdamW, except that every user has its own step count (bias
    correction), learning rate and gradient-norm clip, and users outside `active` stay untouched
    (no momentum drift, no decay), which is what per-user schedules and early stopping need.
    """

    def __init__(self, params: list[torch.Tensor], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = params
        self.users = params[0].shape[0]
        self.b1, self.b2 = betas
        self.eps = eps
        self.wd = weight_decay
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = torch.zeros(self.users, dtype=torch.float64, device=params[0].device)

    def clip_(self, max_norm: float) -> torch.Tensor:
        """Scales each user's gradient (all its tensors together) to norm ≤ max_norm; returns the norms."""
        sq = sum(p.grad.float().pow(2).flatten(1).sum(1) for p in self.params)  # [U]
        norms = sq.sqrt()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for p in self.params:
            p.grad.mul_(coef.view(-1, *[1] * (p.dim() - 1)).to(p.grad.dtype))
        return norms

    @torch.no_grad()
    def step(self, active: torch.Tensor, lrs: list[torch.Tensor]) -> None:
        """`active` bool [U]; `lrs[i]` float [U], the learning rate of every user for params[i]."""
        self.t += active.to(self.t.dtype)
        t = self.t.clamp(min=1)
        bc1 = (1 - self.b1**t).float()
        bc2_sqrt = (1 - self.b2**t).sqrt().float()
        for p, m, v, lr in zip(self.params, self.m, self.v, lrs):
            shape = (-1, *[1] * (p.dim() - 1))
            a = active.view(shape)
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            lr_b = (lr * active).view(shape).to(p.dtype)
            p.mul_(1 - lr_b * self.wd)
            m.copy_(torch.where(a, m.lerp(g, 1 - self.b1), m))
            v.copy_(torch.where(a, v * self.b2 + (1 - self.b2) * g * g, v))
            denom = (v.sqrt() / bc2_sqrt.view(shape)) + self.eps
            p.sub_((lr_b / bc1.view(shape).to(p.dtype)) * m / denom)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers mean pooling + L2 normalisation: the ONNX `sentence_embedding`."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return F.normalize(emb.float(), p=2, dim=-1)


def lm_losses(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example summed next-token NLL [B] and target-token counts [B]."""
    B, T, V = logits.shape
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), ids[:, 1:].reshape(-1), reduction="none").view(B, T - 1)
    valid = (mask[:, 1:] * mask[:, :-1]).to(nll.dtype)
    return (nll * valid).sum(1), valid.sum(1)


class MultiUserTrainer:
    """Trains R (and heads) for a list of users on one frozen, LoRA-XS-injected base model."""

    def __init__(self, model: nn.Module, source: RSource, family: str, tasks: list[UserTask], cfg: TrainConfig):
        if family not in ("decoder", "encoder"):
            raise ValueError(f"family {family!r} is not one of decoder, encoder")
        if not tasks:
            raise ValueError("no users to train")
        names = [t.user for t in tasks]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"user {dup!r} appears twice in one run")
        self.model, self.source, self.family, self.tasks, self.cfg = model, source, family, tasks, cfg
        self.device = torch.device(cfg.device)
        self.U = len(tasks)
        M, r = source.modules, source.rank
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()  # dropout off: the base model is frozen, and equal users must see equal math
        # One table for all users; each user's init comes from its own seed (not its position).
        R0 = torch.stack([init_R(M, r, seed=t.seed) for t in tasks])
        self.table = nn.Parameter(R0.to(self.device))
        self.params = [self.table]
        self.lr_scale = [1.0]
        self.head_w = self.head_b = self.class_valid = None
        if family == "encoder":
            hidden = model.config.hidden_size
            C = max(len(t.classes or []) for t in tasks)
            if C < 2:
                raise ValueError("encoder users need classes (at least 2 labels)")
            self.head_w = nn.Parameter(torch.zeros(self.U, C, hidden, device=self.device))
            self.head_b = nn.Parameter(torch.zeros(self.U, C, device=self.device))
            self.class_valid = torch.zeros(self.U, C, dtype=torch.bool, device=self.device)
            for u, t in enumerate(tasks):
                self.class_valid[u, : len(t.classes or [])] = True
            self.params += [self.head_w, self.head_b]
        self.opt = TableAdamW(self.params, cfg.betas, cfg.eps, cfg.weight_decay)
        self.tokens_trained = 0  # real (unpadded) tokens of every training step so far, counted on the host
        self.streams = [Stream(len(t.train), t.seed) for t in tasks]
        self.use_autocast = cfg.autocast and self.device.type == "cuda"
        self.features = pick_features(cfg.fast, cfg.compile, cfg.features, self.device)
        self.fast_lm = None
        parts = decoder_parts(model) if family == "decoder" else None
        self.no_sync = "no-sync" in self.features
        if parts is not None and self.features & {"chunked-loss", "no-mask"}:
            dtype = torch.bfloat16 if self.use_autocast else next(model.parameters()).dtype
            self.fast_lm = CausalLMLoss(*parts, dtype, "chunked-loss" in self.features, "no-mask" in self.features,
                                        self._to_device, compiled="compile" in self.features)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """Host → device; through pinned memory when the host must not wait for the GPU."""
        if self.no_sync and self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    # -- one forward over a list of (user index, example indices) -------------------------------
    def _forward(self, rows: torch.Tensor, data: Blocks | Examples,
                 example_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per-example loss sums and weights for examples `data` of users `rows`, and the objective
        Σ example_weights · loss sums (differentiable; None without weights)."""
        n = len(rows)
        if n < MIN_ROWS and "compile" in self.features:  # compiled shapes: fast_path.SHAPE_POLICY
            rows, data, example_weights = self._pad_rows(rows, data, example_weights, MIN_ROWS - n)
            s_ex, c_ex, objective = self._forward(rows, data, example_weights)
            return s_ex[:n], c_ex[:n], objective
        dev = self.device
        self._bind(rows)
        try:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.use_autocast):
                ids, mask = self._to_device(data.ids), self._to_device(data.mask)
                if self.family == "decoder" and self.fast_lm is not None:
                    return self.fast_lm(ids, mask, data.mask, example_weights)
                if self.family == "decoder":
                    logits = self.model(input_ids=ids, attention_mask=mask).logits
                    s_ex, c_ex = lm_losses(logits, ids, mask)
                else:
                    hidden = self.model(input_ids=ids, attention_mask=mask, token_type_ids=data.type_ids.to(dev)).last_hidden_state
                    emb = mean_pool(hidden, mask)
                    logits = torch.einsum("bh,bch->bc", emb, self.head_w[rows]) + self.head_b[rows]
                    logits = logits.masked_fill(~self.class_valid[rows], float("-inf"))
                    s_ex = F.cross_entropy(logits, data.labels.to(dev), reduction="none")
                    c_ex = torch.ones_like(s_ex)
        finally:
            self.source.set(None)
        objective = None if example_weights is None else (s_ex.float() * example_weights).sum()
        return s_ex.detach(), c_ex, objective

    @staticmethod
    def _pad_rows(rows: torch.Tensor, data: Blocks | Examples, example_weights: torch.Tensor | None,
                  pad: int) -> tuple[torch.Tensor, Blocks | Examples, torch.Tensor | None]:
        """`pad` more copies of the last row, weighted zero: no loss, no gradient."""
        last = torch.full((pad,), len(rows) - 1, dtype=torch.long)
        keep = torch.cat([torch.arange(len(rows)), last])
        weights = None if example_weights is None else torch.cat([example_weights, example_weights.new_zeros(pad)])
        if isinstance(data, Blocks):
            return rows[keep.to(rows.device)], Blocks(data.ids[keep], data.mask[keep]), weights
        return rows[keep.to(rows.device)], data.subset(keep), weights

    def _bind(self, rows: torch.Tensor) -> None:
        self.source.set(self.table[rows])  # [B, M, r, r]: each example its own user's R

    def _gather(self, u: int, idx: torch.Tensor, split: str) -> Blocks | Examples:
        d = getattr(self.tasks[u], split)
        if isinstance(d, Blocks):
            return Blocks(d.ids[idx], d.mask[idx])
        return d.subset(idx)

    @staticmethod
    def _cat(parts: list[Blocks | Examples]) -> Blocks | Examples:
        if isinstance(parts[0], Blocks):
            return Blocks(torch.cat([p.ids for p in parts]), torch.cat([p.mask for p in parts]))
        return Examples(*(torch.cat([getattr(p, f) for p in parts]) for f in ("ids", "mask", "type_ids", "labels")))

    @torch.no_grad()
    def evaluate(self, users: list[int]) -> dict[int, float]:
        """Held-out loss of each listed user with its current R (token-mean NLL or mean CE)."""
        sums = torch.zeros(self.U, dtype=torch.float64)
        counts = torch.zeros(self.U, dtype=torch.float64)
        items = [(u, i) for u in users if self.tasks[u].val is not None for i in range(len(self.tasks[u].val))]
        bs = self.cfg.eval_batch
        for k in range(0, len(items), bs):
            chunk = items[k : k + bs]
            rows = torch.tensor([u for u, _ in chunk], device=self.device)
            parts = [self._gather(u, torch.tensor([i]), "val") for u, i in chunk]
            s, c, _ = self._forward(rows, self._cat(parts))
            sums.index_add_(0, rows.cpu(), s.double().cpu())
            counts.index_add_(0, rows.cpu(), c.double().cpu())
        return {u: float(sums[u] / counts[u]) for u in users if counts[u] > 0}

    def train(self, should_stop: Callable[[], bool] | None = None) -> list[UserResult]:
        """Trains every user to its step count or early stop; the model is left as it was given."""
        fused_before = self.source.fused, self.source.compute_dtype
        self.source.fused = "fused-branch" in self.features
        self.source.compute_dtype = torch.bfloat16 if self.use_autocast else None
        undo_compile = compile_layers(self.model) if "compile" in self.features else (lambda: None)
        try:
            return self._train(should_stop)
        finally:
            undo_compile()
            self.source.fused, self.source.compute_dtype = fused_before

    def _train(self, should_stop: Callable[[], bool] | None) -> list[UserResult]:
        cfg, U = self.cfg, self.U
        steps = torch.tensor([t.steps for t in self.tasks])
        lrs = torch.tensor([t.lr for t in self.tasks], dtype=torch.float64)
        done = torch.zeros(U, dtype=torch.long)
        stopped = torch.zeros(U, dtype=torch.bool)
        best = self._snapshot()
        best_loss = [math.inf] * U
        best_step = [0] * U
        bad = [0] * U
        recent: list[list[float]] = [[] for _ in range(U)]
        history: list[list[dict]] = [[] for _ in range(U)]
        has_val = [t.val is not None for t in self.tasks]
        total = int(steps.max())
        pending: list[tuple[list[int], torch.Tensor]] = []  # (active users, per-user losses on the device)
        start_scored = cfg.eval_at_start and any(has_val)
        if start_scored:  # the start is the adapter to beat; `best` already holds it
            for u, vl in self.evaluate([u for u in range(U) if has_val[u]]).items():
                history[u].append({"step": 0, "val_loss": vl})
                best_loss[u] = vl

        def read_losses() -> None:  # one device → host copy for all pending steps
            if pending:
                host = torch.stack([loss for _, loss in pending]).cpu()
                for (users, _), row in zip(pending, host):
                    for u in users:
                        recent[u] = (recent[u] + [float(row[u])])[-cfg.eval_every :]
                pending.clear()

        bar = None
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)
        for s in range(total):
            if should_stop is not None and should_stop():
                raise InterruptedError(f"training stopped at step {s} of {total}")
            active = (done < steps) & ~stopped
            act = active.nonzero().flatten().tolist()
            if not act:
                break
            # Each active user contributes its own next batch_size examples.
            rows_l, parts = [], []
            for u in act:
                idx = self.streams[u].take(self.tasks[u].batch_size)
                rows_l += [u] * len(idx)
                parts.append(self._gather(u, idx, "train"))
            rows = self._to_device(torch.tensor(rows_l))
            batch = self._cat(parts)
            self.tokens_trained += int(batch.mask.sum())
            sums = torch.zeros(U, device=self.device)
            counts = torch.zeros(U, device=self.device)
            # Users' losses are independent: the total is a sum of per-user means, so each row of
            # the table gets exactly its own user's gradient. Chunks accumulate gradients.
            counts.index_add_(0, rows, self._weights(rows, batch))
            example_w = 1.0 / counts.clamp(min=1)[rows]  # Σ over users of each user's mean loss
            for k in range(0, len(rows_l), cfg.max_batch):
                sl = slice(k, k + cfg.max_batch)
                s_ex, _, objective = self._forward(rows[sl], self._slice(batch, sl), example_w[sl])
                objective.backward()
                sums.index_add_(0, rows[sl], s_ex.float())
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            self.opt.clip_(cfg.grad_clip)
            done += active.long()
            step_lr = torch.tensor([lr_at(int(done[u]), int(steps[u]), float(lrs[u]), cfg) if active[u] else 0.0 for u in range(U)])
            act_dev = self._to_device(active)
            heads = 2 if self.family == "encoder" else 0
            group_lrs = [self._to_device(step_lr.float())] * (len(self.params) - heads)  # R, or LoRA's tables
            if heads:  # heads follow the same schedule at their own base rate
                head = torch.tensor([lr_at(int(done[u]), int(steps[u]), cfg.head_lr, cfg) if active[u] else 0.0 for u in range(U)])
                group_lrs += [self._to_device(head.float())] * heads
            self.opt.step(act_dev, group_lrs)
            self.opt.zero_grad()
            pending.append((act, sums / counts.clamp(min=1)))
            # Held-out evaluation and per-user early stopping.
            to_eval = [u for u in act if has_val[u] and (int(done[u]) % cfg.eval_every == 0 or done[u] == steps[u])]
            show = bar is not None and (s % 10 == 0 or s == total - 1)
            if not self.no_sync or to_eval or show or len(pending) >= 32:
                read_losses()
            if to_eval:
                for u, vl in self.evaluate(to_eval).items():
                    history[u].append({"step": int(done[u]), "val_loss": vl, "train_loss": sum(recent[u]) / len(recent[u])})
                    if vl < best_loss[u]:
                        best_loss[u], best_step[u], bad[u] = vl, int(done[u]), 0
                        self._snapshot_into(best, u)
                    else:
                        bad[u] += 1
                        if bad[u] >= cfg.patience:
                            stopped[u] = True
            if bar is not None:
                bar.update(1)
                if show:
                    mean = sum(recent[u][-1] for u in act) / len(act)
                    bar.set_postfix(users=len(act), loss=f"{mean:.4f}")
        read_losses()
        if bar is not None:
            bar.close()
        last = self._snapshot()
        results = []
        self.kept: list[list[torch.Tensor]] = []  # per user: every table's kept row (R, or LoRA's A and B)
        for u, t in enumerate(self.tasks):
            kept_best = has_val[u] and (best_step[u] > 0 or start_scored)
            keep = best if kept_best else last
            self.kept.append([k[u].clone() for k in keep])
            results.append(
                UserResult(
                    user=t.user,
                    R=keep[0][u].clone(),
                    head_weight=keep[1][u, : len(t.classes)].clone() if self.family == "encoder" else None,
                    head_bias=keep[2][u, : len(t.classes)].clone() if self.family == "encoder" else None,
                    classes=t.classes,
                    steps=int(done[u]),
                    best_step=best_step[u] if kept_best else int(done[u]),
                    train_loss=sum(recent[u]) / max(1, len(recent[u])),
                    val_loss=best_loss[u] if kept_best else None,
                    stopped_early=bool(stopped[u]),
                    history=history[u],
                )
            )
        return results

    def _weights(self, rows: torch.Tensor, batch: Blocks | Examples) -> torch.Tensor:
        if isinstance(batch, Blocks):  # on the host: the count of target tokens of each example
            m = batch.mask
            return self._to_device((m[:, 1:] * m[:, :-1]).sum(1).float())
        return torch.ones(len(rows), device=self.device)

    @staticmethod
    def _slice(batch: Blocks | Examples, sl: slice) -> Blocks | Examples:
        if isinstance(batch, Blocks):
            return Blocks(batch.ids[sl], batch.mask[sl])
        return Examples(batch.ids[sl], batch.mask[sl], batch.type_ids[sl], batch.labels[sl])

    def _snapshot(self) -> list[torch.Tensor]:
        return [p.detach().float().cpu().clone() for p in self.params]

    def _snapshot_into(self, snap: list[torch.Tensor], u: int) -> None:
        for s, p in zip(snap, self.params):
            s[u] = p.detach()[u].float().cpu()


def train_config_summary(tasks: list[UserTask], source: RSource, cfg: TrainConfig, family: str) -> dict:
    per_user = source.modules * source.rank * source.rank
    tokens = sum(t.batch_size * t.train.ids.shape[1] for t in tasks)
    return {
        **{k: v for k, v in asdict(cfg).items() if k != "progress"},
        "family": family,
        "users": len(tasks),
        "modules": source.modules,
        "rank": source.rank,
        "trainable_per_user": per_user,
        "examples_per_step": sum(t.batch_size for t in tasks),
        "tokens_per_step": tokens,
        "steps": max(t.steps for t in tasks),
    }


# ---------------------------------------------------------------------------------------------
# Command line


def _read_data_file(path: Path) -> tuple[object, object]:
    obj = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(obj, dict) and "data" in obj:
        return obj["data"], obj.get("options")
    return obj, None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loraxs.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True, help="prepared model folder (manifest.json + factors.safetensors)")
    p.add_argument("--data", nargs="+", required=True, help="job data JSON files, one per user")
    p.add_argument("--user", default=None, help="user id (one data file only; default: the file stem)")
    p.add_argument("--out-dir", default="out/adapters", help="where <user>.safetensors files go")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="examples per user per step")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--val-frac", type=float, default=0.0, help="held-out fraction for early stopping")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--head-lr", type=float, default=1e-2)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--base-dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="storage of the frozen base model (auto: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--source", default="worker", choices=["worker", "import"], help="adapter metadata `source`")
    p.add_argument("--note", default=None)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    from .models import load_prepared

    torch.manual_seed(0)
    files = [Path(f) for f in args.data]
    if args.user and len(files) != 1:
        p.error(f"--user names one user but {len(files)} data files were given")
    cli = {k: getattr(args, k) for k in ("steps", "lr", "seq_len", "batch_size", "seed") if getattr(args, k) is not None}
    base, factors, source, manifest = load_prepared(args.model_dir)
    store_frozen_base(base.model, base_dtype(args.base_dtype, args.device))
    if args.device == "cuda":
        base.model.to("cuda")
        _fast_attention(base.model)
    tasks = []
    for f in files:
        data, options = _read_data_file(f)
        opts = parse_options({**(options or {}), **cli}, job_defaults(base.family))
        user = args.user or f.stem
        tasks.append(make_task(user, parse_job_data(data, base.family), opts, base.tokenizer, args.val_frac))
    cfg = TrainConfig(val_frac=args.val_frac, eval_every=args.eval_every, patience=args.patience, head_lr=args.head_lr,
                      weight_decay=args.weight_decay, grad_clip=args.grad_clip, device=args.device,
                      progress=not args.no_progress)
    summary = train_config_summary(tasks, source, cfg, base.family)
    print(json.dumps({"model": manifest["id"], "factors": manifest["factors"]["sha256"], **summary}, indent=1))
    t0 = time.time()
    results = MultiUserTrainer(base.model, source, base.family, tasks, cfg).train()
    created = created_now()
    out = Path(args.out_dir)
    for r in results:
        path = out / f"{r.user}.safetensors"
        save_result(path, r, manifest, source=args.source, created=created, note=args.note)
        extra = f" val_ppl={r.val_ppl:.3f} best_step={r.best_step}" if r.val_loss is not None and base.family == "decoder" else ""
        print(f"{r.user}: steps={r.steps} train_loss={r.train_loss:.4f}{extra} -> {path} ({path.stat().st_size} bytes)")
    print(f"trained {len(results)} users in {time.time() - t0:.1f}s")
    return 0


def _fast_attention(model: nn.Module) -> None:
    """Prepared models load with eager attention (for export); training on a GPU wants SDPA."""
    try:
        model.set_attn_implementation("sdpa")
    except Exception:  # older transformers or a model without SDPA support: keep eager
        pass


if __name__ == "__main__":
    sys.exit(main())
