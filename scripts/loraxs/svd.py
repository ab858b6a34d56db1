"""Truncated SVD of pretrained weights into LoRA-XS factors.

Convention (docs/contracts.md): W ≈ U_r Σ_r V_rᵀ, `down = Σ_r V_rᵀ` [r, in], `up = U_r` [out, r].

The randomized method is a Halko-Martinsson-Tropp range finder with power iterations, written
here rather than torch.svd_lowrank so that the Gaussian test matrix comes from a seeded CPU
generator: the same seed gives the same factors on any device up to float rounding, and a
stack of same-shaped weights runs as one batched computation on a GPU. All math is fp32.
Signs are fixed so that the largest-magnitude entry of every column of `up` is positive.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .lora_xs import Factors

MIN_OVERSAMPLE = 8  # fewer extra directions lose accuracy on slowly decaying spectra
MIN_NITER = 4  # 2 power iterations give ~5e-3 rel. error on the top-64 values of a 7B layer; 4 give ~2e-3


@dataclass
class SvdOptions:
    method: str = "randomized"  # "randomized" | "exact"
    # 16 extra directions and 8 power iterations: on SmolLM2's q/v weights the top-16 values come
    # out within ~2e-4 of exact (8/4 gives ~4e-2 on v_proj); the cost is milliseconds per layer.
    oversample: int = 16
    niter: int = 8
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.method not in ("randomized", "exact"):
            raise ValueError(f"svd method {self.method!r} is not one of 'randomized', 'exact'")
        if self.method == "randomized" and self.oversample < MIN_OVERSAMPLE:
            raise ValueError(f"oversample {self.oversample} is below the minimum {MIN_OVERSAMPLE}")
        if self.method == "randomized" and self.niter < MIN_NITER:
            raise ValueError(f"niter {self.niter} is below the minimum {MIN_NITER}")

    def manifest(self) -> dict:
        """The manifest's `factors.svd` block."""
        d = asdict(self)
        d.pop("device")
        if self.method == "exact":
            d.pop("oversample")
            d.pop("niter")
        return d


def _fix_signs(U: torch.Tensor, Vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips (U[:, j], Vh[j]) pairs so that each U column's largest-|.| entry is positive.

    U [..., m, k], Vh [..., k, n].
    """
    idx = U.abs().argmax(dim=-2, keepdim=True)  # [..., 1, k]
    signs = torch.sign(torch.gather(U, -2, idx))  # [..., 1, k]
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return U * signs, Vh * signs.transpose(-1, -2)


def _orth(Y: torch.Tensor, method: str = "qr") -> torch.Tensor:
    """Orthonormal basis of the columns of Y [..., m, q].

    `qr`: Householder QR (LAPACK / cuSOLVER). `cholqr2`: Cholesky QR done twice (a shifted first
    pass keeps the Gram matrix positive definite): three small [q, q] factorisations and a few
    matmuls, which batches far better on a GPU than a loop of tall-skinny QRs.
    """
    if method == "qr":
        return torch.linalg.qr(Y, mode="reduced").Q
    if method != "cholqr2":
        raise ValueError(f"orthonormalisation {method!r} is not one of 'qr', 'cholqr2'")
    q = Y.shape[-1]
    eye = torch.eye(q, dtype=Y.dtype, device=Y.device)
    for shift in (True, False, False):
        G = Y.transpose(-1, -2) @ Y  # [..., q, q]
        if shift:  # shifted CholeskyQR: tolerates rank-deficient or badly conditioned Y
            tr = G.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
            G = G + eye * (tr * 1e-6)
        L, info = torch.linalg.cholesky_ex(G)
        if bool((info != 0).any()):
            return torch.linalg.qr(Y, mode="reduced").Q
        Y = torch.linalg.solve_triangular(L.transpose(-1, -2), Y, upper=True, left=False)  # Y Lᵀ⁻¹
    return Y


def layer_seed(seed: int, name: str) -> int:
    """A per-layer seed: layers get independent test matrices, stable across runs and processes."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def gaussian(shape: tuple[int, ...], seed: int, device: torch.device | str) -> torch.Tensor:
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(device)


def randomized_svd(
    W: torch.Tensor,
    rank: int,
    oversample: int = 8,
    niter: int = 4,
    omega: torch.Tensor | None = None,
    seed: int = 0,
    orth: str = "qr",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-`rank` SVD of W [..., m, n] (batched over leading dims): U [..., m, r], S [..., r], Vh [..., r, n].

    `omega` [..., n, q] is the Gaussian test matrix (drawn from `seed` when omitted); `orth` picks
    the orthonormalisation (see `_orth`).
    """
    W = W.to(torch.float32)
    m, n = W.shape[-2:]
    q = min(rank + oversample, m, n)
    if omega is None:
        omega = gaussian((*W.shape[:-2], n, q), seed, W.device)
    Q = _orth(W @ omega, orth)  # [..., m, q]
    Wt = W.transpose(-1, -2)
    for _ in range(niter):  # subspace iteration, re-orthonormalised each half step for fp32 stability
        Z = _orth(Wt @ Q, orth)  # [..., n, q]
        Q = _orth(W @ Z, orth)  # [..., m, q]
    B = Q.transpose(-1, -2) @ W  # [..., q, n]
    Ub, S, Vh = torch.linalg.svd(B, full_matrices=False)  # [..., q, q], [..., q], [..., q, n]
    U = Q @ Ub  # [..., m, q]
    U, Vh = _fix_signs(U[..., :rank], Vh[..., :rank, :])
    return U, S[..., :rank], Vh


def exact_svd(W: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    U, S, Vh = torch.linalg.svd(W.to(torch.float32), full_matrices=False)
    U, Vh = _fix_signs(U[..., :rank], Vh[..., :rank, :])
    return U, S[..., :rank], Vh


def factorize(W: torch.Tensor, rank: int, opts: SvdOptions, name: str = "") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(down [r, in], up [out, r], S [r]) for one weight W [out, in], computed on opts.device, returned on CPU."""
    out_f, in_f = W.shape
    if not 1 <= rank <= min(out_f, in_f):
        raise ValueError(f"rank {rank} is outside [1, {min(out_f, in_f)}] for {name or 'weight'} of shape {tuple(W.shape)}")
    Wd = W.detach().to(opts.device, torch.float32)
    if opts.method == "exact":
        U, S, Vh = exact_svd(Wd, rank)
    else:
        U, S, Vh = randomized_svd(Wd, rank, opts.oversample, opts.niter, seed=layer_seed(opts.seed, name))
    down = (S[:, None] * Vh).contiguous()  # Σ_r V_rᵀ [r, in]
    up = U.contiguous()  # U_r [out, r]
    return down.cpu(), up.cpu(), S.cpu()


def top_singular_rel_error(S_approx: torch.Tensor, W: torch.Tensor) -> float:
    """max_i |s_i - s̃_i| / s_i over the top-r singular values, against a full SVD of W."""
    exact = torch.linalg.svdvals(W.to(torch.float32))[: S_approx.numel()].to(S_approx.device)
    return float(((S_approx - exact).abs() / exact.clamp_min(torch.finfo(torch.float32).tiny)).max())


def sample_indices(count: int, samples: int) -> list[int]:
    """Evenly spread layer indices (first and last included) for the accuracy check."""
    if count == 0 or samples <= 0:
        return []
    if samples >= count:
        return list(range(count))
    return sorted({round(i * (count - 1) / (samples - 1)) for i in range(samples)} if samples > 1 else {0})


@dataclass
class SvdReport:
    seconds: float
    modules: int
    method: str
    device: str
    sample_rel_errors: dict[str, float]  # module name -> max rel. error of top-r singular values vs exact


def compute_factors(
    model: nn.Module,
    names: list[str],
    rank: int,
    opts: SvdOptions,
    model_id: str = "",
    check_samples: int = 3,
    log: Callable[[str], None] = print,
) -> tuple[Factors, SvdReport]:
    """SVD of every named nn.Linear; logs per-layer progress, the total time, and the accuracy sample."""
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {opts.device!r} requested but CUDA is not available")
    down: dict[str, torch.Tensor] = {}
    up: dict[str, torch.Tensor] = {}
    values: dict[str, torch.Tensor] = {}
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        module = model.get_submodule(name)
        W = module.weight
        t = time.perf_counter()
        down[name], up[name], values[name] = factorize(W, rank, opts, name)
        log(f"  svd [{i + 1}/{len(names)}] {name} {tuple(W.shape)} r={rank} {1000 * (time.perf_counter() - t):.1f} ms")
    if opts.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    errors: dict[str, float] = {}
    if opts.method == "randomized":
        for i in sample_indices(len(names), check_samples):
            name = names[i]
            errors[name] = top_singular_rel_error(values[name], model.get_submodule(name).weight.detach())
    log(
        f"svd: {len(names)} modules, {opts.method} on {opts.device}, {seconds:.2f} s"
        + (f"; top-{rank} singular values vs exact, max rel. error {max(errors.values()):.2e} on {len(errors)} sampled layers" if errors else "")
    )
    metadata = {"svd": opts.method, "seed": str(opts.seed)}
    if opts.method == "randomized":
        metadata.update(oversample=str(opts.oversample), niter=str(opts.niter))
    factors = Factors(list(names), down, up, rank, metadata, "")
    return factors, SvdReport(seconds, len(names), opts.method, opts.device, errors)
