"""SVD into LoRA-XS factors: the convention, accuracy, sign fixing and determinism."""

from __future__ import annotations

import pytest
import torch

from loraxs.svd import (
    SvdOptions,
    compute_factors,
    exact_svd,
    factorize,
    layer_seed,
    randomized_svd,
    sample_indices,
    top_singular_rel_error,
)


def decaying(out_f: int, in_f: int, seed: int = 0, decay: float = 0.8) -> torch.Tensor:
    """A weight with a known, geometrically decaying spectrum: U diag(decay^i) Vᵀ."""
    g = torch.Generator().manual_seed(seed)
    k = min(out_f, in_f)
    U = torch.linalg.qr(torch.randn(out_f, k, generator=g, dtype=torch.float64)).Q
    V = torch.linalg.qr(torch.randn(in_f, k, generator=g, dtype=torch.float64)).Q
    S = decay ** torch.arange(k, dtype=torch.float64)
    return ((U * S) @ V.T).float()


def best_rank_r(W: torch.Tensor, r: int) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    return ((U[:, :r] * S[:r]) @ Vh[:r]).float()


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_up_down_reconstruct_the_best_rank_r_approximation(method):
    W = decaying(48, 80, seed=1)
    r = 6
    down, up, S = factorize(W, r, SvdOptions(method=method), "layer")
    assert down.shape == (r, 80) and up.shape == (48, r)  # down [r, in], up [out, r]
    assert torch.allclose(up @ down, best_rank_r(W, r), atol=1e-5)
    # up = U_r has orthonormal columns and down = Σ_r V_rᵀ carries the singular values.
    assert torch.allclose(up.T @ up, torch.eye(r), atol=1e-5)
    assert torch.allclose(down.norm(dim=1), S, rtol=1e-5)
    exact = torch.linalg.svdvals(W.double())[:r].float()
    assert torch.allclose(S, exact, rtol=1e-5)


def test_sign_convention_largest_entry_of_each_up_column_is_positive():
    W = decaying(40, 30, seed=2)
    for method in ("exact", "randomized"):
        _, up, _ = factorize(W, 5, SvdOptions(method=method), "x")
        idx = up.abs().argmax(dim=0)
        assert (up[idx, torch.arange(5)] > 0).all(), method
    # The same subspace from two methods then agrees entry by entry, not only up to sign.
    _, up_e, _ = factorize(W, 5, SvdOptions(method="exact"), "x")
    _, up_r, _ = factorize(W, 5, SvdOptions(method="randomized"), "x")
    assert torch.allclose(up_e, up_r, atol=1e-4)


def test_randomized_is_deterministic_for_a_seed_and_changes_with_it():
    W = torch.randn(64, 96, generator=torch.Generator().manual_seed(3))  # flat spectrum: seed shows
    a = factorize(W, 8, SvdOptions(seed=7), "m")
    b = factorize(W, 8, SvdOptions(seed=7), "m")
    c = factorize(W, 8, SvdOptions(seed=8), "m")
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert layer_seed(0, "a.q_proj") != layer_seed(0, "a.v_proj")


def test_batched_randomized_matches_one_by_one():
    Ws = torch.stack([decaying(32, 40, seed=s) for s in range(3)])
    omega = torch.randn(3, 40, 12, generator=torch.Generator().manual_seed(0))
    U, S, Vh = randomized_svd(Ws, 4, oversample=8, niter=4, omega=omega)
    for i in range(3):
        u, s, vh = randomized_svd(Ws[i], 4, oversample=8, niter=4, omega=omega[i])
        assert torch.allclose(U[i], u, atol=1e-5) and torch.allclose(S[i], s, atol=1e-6)


def test_randomized_top_values_close_to_exact_on_decaying_spectrum():
    W = decaying(200, 150, seed=4, decay=0.95)
    U, S, Vh = randomized_svd(W, 16, oversample=8, niter=4, seed=0)
    assert top_singular_rel_error(S, W) < 2e-3
    Ue, Se, _ = exact_svd(W, 16)
    assert torch.allclose(S, Se, rtol=2e-3)


def test_options_and_rank_are_validated_with_the_offending_value():
    with pytest.raises(ValueError, match="oversample 4 is below the minimum 8"):
        SvdOptions(oversample=4)
    with pytest.raises(ValueError, match="niter 2 is below the minimum 4"):
        SvdOptions(niter=2)
    with pytest.raises(ValueError, match="'qr'"):
        SvdOptions(method="qr")
    with pytest.raises(ValueError, match=r"rank 40 is outside \[1, 30\] for w of shape \(30, 50\)"):
        factorize(torch.randn(30, 50), 40, SvdOptions(), "w")
    assert SvdOptions(method="exact", seed=3).manifest() == {"method": "exact", "seed": 3}
    assert SvdOptions().manifest() == {"method": "randomized", "oversample": 16, "niter": 8, "seed": 0}


def test_compute_factors_over_a_model_reports_progress_and_accuracy():
    model = torch.nn.Sequential(torch.nn.Linear(24, 32), torch.nn.Linear(32, 16))
    with torch.no_grad():
        model[0].weight.copy_(decaying(32, 24, seed=5))
        model[1].weight.copy_(decaying(16, 32, seed=6))
    lines: list[str] = []
    factors, report = compute_factors(model, ["0", "1"], 4, SvdOptions(), "m", log=lines.append)
    assert factors.names == ["0", "1"] and factors.rank == 4
    assert factors.down["1"].shape == (4, 32) and factors.up["1"].shape == (16, 4)
    assert factors.metadata == {"svd": "randomized", "seed": "0", "oversample": "16", "niter": "8"}
    assert any("[2/2] 1 (16, 32)" in line for line in lines)
    assert set(report.sample_rel_errors) == {"0", "1"} and max(report.sample_rel_errors.values()) < 1e-4
    assert sample_indices(60, 3) == [0, 30, 59] and sample_indices(2, 3) == [0, 1]
