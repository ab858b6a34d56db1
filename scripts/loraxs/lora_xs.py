"""The LoRA-XS branch: y = x Wᵀ + ((x downᵀ) Rᵀ) upᵀ, with W, down and up frozen.

One `RSource` is shared by every adapted module of a model. It holds either
- `R` of shape [M, r, r]: one adapter for the whole batch (inference, ONNX export), or
- `R` of shape [B, M, r, r]: one adapter per example (many users trained in one batch;
  each example gathers its own user's R from a table [users, M, r, r]).
Module i reads row i. Keeping R outside the modules is what lets an exported graph take R
as a single input and lets a trainer swap users without touching the base model.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn

FACTORS_FORMAT = "loraxs-factors"
R_INIT_STD = 1e-5  # the reference implementation's init: training starts from the base model


class RSource:
    """Holds the current R for all adapted modules; set before each forward pass."""

    def __init__(self, modules: int, rank: int):
        self.modules = modules
        self.rank = rank
        self.R: torch.Tensor | None = None
        # Trainers switch this on: R folded into the down-projection and the up-projection's add
        # fused into its product. Off, the branch is the three plain products the ONNX export traces.
        self.fused = False
        self.compute_dtype: torch.dtype | None = None  # fused path: the products' dtype (autocast's); None = x's

    def set(self, R: torch.Tensor | None) -> None:
        if R is not None and tuple(R.shape[-3:]) != (self.modules, self.rank, self.rank):
            raise ValueError(
                f"R has shape {tuple(R.shape)}; expected [..., {self.modules}, {self.rank}, {self.rank}]"
            )
        self.R = R


class LoraXSLinear(nn.Module):
    """A frozen nn.Linear plus the LoRA-XS branch whose R is row `index` of the shared RSource."""

    def __init__(self, base: nn.Linear, down: torch.Tensor, up: torch.Tensor, index: int, source: RSource):
        super().__init__()
        out_features, in_features = base.weight.shape
        rank = down.shape[0]
        if tuple(down.shape) != (rank, in_features) or tuple(up.shape) != (out_features, rank):
            raise ValueError(
                f"factors do not fit the layer: down {tuple(down.shape)} (want [{rank}, {in_features}]), "
                f"up {tuple(up.shape)} (want [{out_features}, {rank}])"
            )
        self.base = base
        self.register_buffer("down", down.detach().to(torch.float32).contiguous())  # [r, in]
        self.register_buffer("up", up.detach().to(torch.float32).contiguous())  # [out, r]
        self.index = index
        self.source = source  # plain attribute: not a submodule, not saved
        self._cast: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}  # fused path: factors per compute dtype

    def _apply(self, fn, recurse=True):  # .to() / .cuda() / .half(): cached casts would be stale
        self._cast = {}
        return super()._apply(fn, recurse)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:  # some model code reads .weight of its projections
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        R = self.source.R
        if R is None:
            return y
        if self.source.fused:
            return self._fused(x, y, R)
        dtype = x.dtype
        h = x @ self.down.to(dtype).T  # [B, T, r]
        if R.dim() == 3:  # one adapter for the batch
            h = h @ R[self.index].to(dtype).T  # [B, T, r]
        else:  # one adapter per example: R is [B, M, r, r]
            Rb = R.select(1, self.index).to(dtype)  # [B, r, r]; select: the index can stay symbolic when compiled
            h = torch.matmul(h, Rb.transpose(-1, -2))  # [B, T, r]
        return y + h @ self.up.to(dtype).T  # [B, T, out]

    def _factors_in(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(down [r, in], upᵀ [r, out]) in `dtype`, cast once: the frozen factors never change."""
        got = self._cast.get(dtype)
        if got is None:
            got = self._cast[dtype] = (self.down.to(dtype).contiguous(), self.up.to(dtype).T.contiguous())
        return got

    def _fused(self, x: torch.Tensor, y: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """y + x (R·down)ᵀ upᵀ with two products: R folded into down, the add fused into the last one."""
        dtype = self.source.compute_dtype or x.dtype
        down, up_t = self._factors_in(dtype)
        xd = x.to(dtype)
        if R.dim() == 3:  # one adapter for the batch: A = R·down [r, in]
            h = xd @ (R[self.index].to(dtype) @ down).T
        else:  # one adapter per example: A [B, r, in]
            A = torch.matmul(R.select(1, self.index).to(dtype), down)  # select: one compiled graph for every layer
            h = torch.bmm(xd.reshape(x.shape[0], -1, x.shape[-1]), A.transpose(1, 2))
        out = torch.addmm(y.reshape(-1, y.shape[-1]).to(dtype), h.reshape(-1, h.shape[-1]), up_t)
        return out.view(y.shape)


@dataclass
class Factors:
    """Frozen factors of every adapted module, in manifest order."""

    names: list[str]
    down: dict[str, torch.Tensor]  # name -> [r, in]
    up: dict[str, torch.Tensor]  # name -> [out, r]
    rank: int
    metadata: dict[str, str]
    digest: str  # "sha256:<hex>" of the file these came from ("" if not from a file)


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def save_factors(path: str | Path, factors: Factors, model_id: str, extra: dict[str, str] | None = None) -> str:
    """Writes factors.safetensors (F32, `<module>.down` / `<module>.up`) and returns its digest."""
    tensors: dict[str, torch.Tensor] = {}
    for name in factors.names:
        tensors[f"{name}.down"] = factors.down[name].detach().to(torch.float32).contiguous().cpu()
        tensors[f"{name}.up"] = factors.up[name].detach().to(torch.float32).contiguous().cpu()
    metadata = {
        "format": FACTORS_FORMAT,
        "model": model_id,
        "rank": str(factors.rank),
        "modules": str(len(factors.names)),
        # The order of modules is the order of R's first axis; safetensors sorts tensor names.
        "order": ",".join(factors.names),
        **(extra or {}),
    }
    Path(path).write_bytes(canonical_safetensors(save(tensors, metadata=metadata)))
    return file_digest(path)


def canonical_safetensors(raw: bytes) -> bytes:
    """The same file with its JSON header in a fixed order (metadata keys sorted, tensors by offset).

    The safetensors writer emits `__metadata__` in hash-map order, which changes from process to
    process; the factor digest must depend only on the content.
    """
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    ordered: dict = {} if meta is None else {"__metadata__": dict(sorted(meta.items()))}
    ordered.update(sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]))
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the writer's 8-byte alignment of the data section
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]


def load_factors(path: str | Path) -> Factors:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
    if metadata.get("format") != FACTORS_FORMAT:
        raise ValueError(f"{path}: format is {metadata.get('format')!r}; expected {FACTORS_FORMAT!r}")
    tensors = load_file(str(path))
    names = [n for n in metadata.get("order", "").split(",") if n]
    if len(names) != int(metadata.get("modules", -1)):
        raise ValueError(f"{path}: module order lists {len(names)} names; metadata says {metadata.get('modules')}")
    down = {n: tensors[f"{n}.down"] for n in names}
    up = {n: tensors[f"{n}.up"] for n in names}
    return Factors(names, down, up, int(metadata["rank"]), metadata, file_digest(path))


LINEAR_KINDS_EXCLUDED = ("lm_head", "classifier", "pooler", "score")


def find_target_modules(model: nn.Module, targets: str) -> list[str]:
    """Resolves `targets` to an ordered list of nn.Linear module names.

    `targets` is `all-linear` (every linear layer except the output head), a comma-separated
    list of name suffixes (`q_proj,v_proj`, `attention.self.query`), or `re:<regex>` matched
    against full module names.
    """
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if targets == "all-linear":
        chosen = [n for n, _ in linears if not any(n.split(".")[-1] == x or n.startswith(x) for x in LINEAR_KINDS_EXCLUDED)]
    elif targets.startswith("re:"):
        pattern = re.compile(targets[3:])
        chosen = [n for n, _ in linears if pattern.fullmatch(n)]
    else:
        suffixes = [s.strip() for s in targets.split(",") if s.strip()]
        chosen = [n for n, _ in linears if any(n == s or n.endswith("." + s) for s in suffixes)]
    if not chosen:
        sample = ", ".join(n for n, _ in linears[:8])
        raise ValueError(f"targets {targets!r} matched no linear layer; linear layers look like: {sample}")
    return chosen


def _get_parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def inject(model: nn.Module, factors: Factors) -> RSource:
    """Replaces each target nn.Linear by a LoraXSLinear sharing one RSource; freezes the model."""
    for p in model.parameters():
        p.requires_grad_(False)
    source = RSource(len(factors.names), factors.rank)
    for i, name in enumerate(factors.names):
        parent, child = _get_parent(model, name)
        base = getattr(parent, child)
        if not isinstance(base, nn.Linear):
            raise ValueError(f"module {name!r} is {type(base).__name__}, not nn.Linear")
        setattr(parent, child, LoraXSLinear(base, factors.down[name], factors.up[name], i, source))
    return source


def adapted_modules(model: nn.Module) -> list[tuple[str, LoraXSLinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraXSLinear)]


def init_R(modules: int, rank: int, users: int | None = None, seed: int = 0) -> torch.Tensor:
    """R ~ N(0, 1e-5): [M, r, r], or [users, M, r, r] when `users` is given."""
    g = torch.Generator().manual_seed(seed)
    shape = (modules, rank, rank) if users is None else (users, modules, rank, rank)
    return torch.randn(shape, generator=g) * R_INIT_STD


def merged_weight(W: torch.Tensor, down: torch.Tensor, up: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """W + up · R · down: the weight an adapter means (for checks and for PEFT export)."""
    return W + up @ R @ down
