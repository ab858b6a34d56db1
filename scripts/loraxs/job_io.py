"""A training job's input and output: one user's job data becomes a UserTask (tokenized, with its
seeded held-out split) and the trainer's UserResult becomes the adapter file's bytes.

`loraxs.train` (files from the command line) and `loraxs.worker` (jobs from the API) both go
through here, so an adapter trained either way carries the same metadata.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

from .data import Blocks, DataError, JobOptions, LabelData, TextData, split_blocks, text_blocks


@dataclass
class Examples:
    """Tokenized classification examples: ids/mask/type_ids [N, T], labels [N] (class indices)."""

    ids: torch.Tensor
    mask: torch.Tensor
    type_ids: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]

    def subset(self, idx: torch.Tensor) -> Examples:
        return Examples(self.ids[idx], self.mask[idx], self.type_ids[idx], self.labels[idx])


@dataclass
class UserTask:
    """One user's training set-up inside a multi-user run."""

    user: str
    train: Blocks | Examples
    val: Blocks | Examples | None = None
    steps: int = 200
    lr: float = 2e-3
    seed: int = 0
    batch_size: int = 4
    classes: list[str] | None = None  # encoders: head row order


@dataclass
class UserResult:
    user: str
    R: torch.Tensor  # [M, r, r] float32, CPU
    head_weight: torch.Tensor | None  # [C, hidden]
    head_bias: torch.Tensor | None  # [C]
    classes: list[str] | None
    steps: int  # optimizer steps taken
    best_step: int  # the step whose R was kept (== steps without a held-out split)
    train_loss: float  # mean loss over the last eval_every steps
    val_loss: float | None  # best held-out loss (token-mean NLL for decoders, CE for encoders)
    stopped_early: bool
    history: list[dict] = field(default_factory=list)

    @property
    def val_ppl(self) -> float | None:
        return math.exp(self.val_loss) if self.val_loss is not None else None


def user_seed(seed: int, user: str) -> int:
    """A user's own seed: independent of which other users share the run."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{user}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def label_examples(tokenizer, texts: list[str], labels: list[str], classes: list[str], seq_len: int) -> Examples:
    enc = tokenizer(texts, truncation=True, max_length=seq_len, padding="max_length", return_tensors="pt")
    type_ids = enc.get("token_type_ids")
    if type_ids is None:
        type_ids = torch.zeros_like(enc["input_ids"])
    index = {c: i for i, c in enumerate(classes)}
    return Examples(enc["input_ids"], enc["attention_mask"], type_ids, torch.tensor([index[l] for l in labels]))


def make_task(user: str, data: TextData | LabelData, opts: JobOptions, tokenizer, val_frac: float = 0.0) -> UserTask:
    """Tokenizes one user's data into a UserTask (seeded held-out split when val_frac > 0)."""
    seed = user_seed(opts.seed, user)
    if isinstance(data, TextData):
        blocks = text_blocks(tokenizer, data.texts, opts.seq_len)
        if blocks.tokens < 2:
            raise DataError(f"data.texts of user {user!r} tokenize to {blocks.tokens} tokens; at least 2 are needed")
        train, val = split_blocks(blocks, val_frac, seed)
        return UserTask(user, train, val, opts.steps, opts.lr, seed, opts.batch_size)
    ex = label_examples(tokenizer, data.texts, data.labels, data.classes, opts.seq_len)
    val = None
    n_val = int(len(ex) * val_frac)
    if val_frac > 0 and 1 <= n_val < len(ex):
        perm = torch.randperm(len(ex), generator=torch.Generator().manual_seed(seed))
        ex, val = ex.subset(perm[n_val:].sort().values), ex.subset(perm[:n_val].sort().values)
    return UserTask(user, ex, val, opts.steps, opts.lr, seed, opts.batch_size, classes=data.classes)


def created_now() -> str:
    """ISO time of creation; SOURCE_DATE_EPOCH pins it for reproducible files."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def adapter_args(result: UserResult, manifest: dict, source: str, created: str | None, note: str | None = None) -> dict:
    """Keyword arguments of loraxs.format.save_adapter / encode_adapter for one user's result."""
    metadata = {"source": source, "steps": str(result.steps)}
    if created:
        metadata["created"] = created
    if note:
        metadata["note"] = note
    head = None
    if result.head_weight is not None:
        C, hidden = result.head_weight.shape
        head = {"weight": result.head_weight, "bias": result.head_bias, "classes": C, "hidden": hidden,
                "labels": list(result.classes or [])}
    return dict(
        model=manifest["id"],
        factors=manifest["factors"]["sha256"],
        rank=int(manifest["rank"]),
        modules=len(manifest["modules"]),
        R=result.R,
        head=head,
        metadata=metadata,
    )


def expectations(manifest: dict) -> dict:
    """What an adapter for this model must say (loraxs.format.decode_adapter's `expect`)."""
    out = {"model": manifest["id"], "factors": manifest["factors"]["sha256"], "rank": int(manifest["rank"]),
           "modules": len(manifest["modules"])}
    if manifest.get("family") == "encoder" and manifest.get("config", {}).get("hidden_size"):
        out["hidden"] = int(manifest["config"]["hidden_size"])
    return out


def encode_result(result: UserResult, manifest: dict, source: str = "worker", created: str | None = None, note: str | None = None) -> bytes:
    from .format import encode_adapter

    return encode_adapter(**adapter_args(result, manifest, source, created, note))


def save_result(path: str | Path, result: UserResult, manifest: dict, source: str = "worker", created: str | None = None, note: str | None = None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(encode_result(result, manifest, source, created, note))
