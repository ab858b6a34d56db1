"""SVD into LoRA-XS factors for a Llama-2-7B-shaped model: randomized vs exact, in one run.

    PYTHONPATH=scripts python bench/svd_gpu.py                 # the real shapes, on CUDA
    PYTHONPATH=scripts python bench/svd_gpu.py --small --device cpu   # a smoke run anywhere

Llama-2-7B's real configuration (32 layers, hidden 4096, intermediate 11008; the 7 linear kinds
q, k, v, o, gate, up, down = 224 weights) with random weights whose singular values are known:
W = U diag(s) Vᵀ with U, V orthonormal and s_i = (i + 1)^-1 (a decaying spectrum), so the
top-r values of every layer are checked against the truth, and on a sample of layers also
against a full SVD. Rank 64, fp32 throughout (TF32 off: it costs ~1e-3 relative accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from loraxs.svd import randomized_svd

KINDS = {  # kind -> (out, in) of Llama-2-7B
    "q_proj": ("h", "h"), "k_proj": ("h", "h"), "v_proj": ("h", "h"), "o_proj": ("h", "h"),
    "gate_proj": ("i", "h"), "up_proj": ("i", "h"), "down_proj": ("h", "i"),
}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def spectrum(k: int, device: str) -> torch.Tensor:
    return 1.0 / torch.arange(1, k + 1, dtype=torch.float32, device=device)


def make_weights(dims: dict[str, int], layers: int, device: str, seed: int) -> tuple[dict[str, torch.Tensor], dict]:
    """Per kind a stack [layers, out, in] with spectrum s; layers differ by a permutation and signs."""
    g = torch.Generator(device=device).manual_seed(seed)
    bases: dict[tuple[int, int], torch.Tensor] = {}

    def basis(m: int, k: int) -> torch.Tensor:
        if (m, k) not in bases:
            bases[(m, k)] = torch.linalg.qr(torch.randn(m, k, generator=g, device=device)).Q
        return bases[(m, k)]

    weights = {}
    for kind, (o, i) in KINDS.items():
        m, n = dims[o], dims[i]
        k = min(m, n)
        U0, V0 = basis(m, k), basis(n, k)
        s = spectrum(k, device)
        stack = torch.empty(layers, m, n, device=device)
        for layer in range(layers):
            perm = torch.randperm(k, generator=g, device=device)
            signs = torch.randint(0, 2, (k,), generator=g, device=device).float() * 2 - 1
            stack[layer] = (U0[:, perm] * (s * signs)) @ V0[:, perm].T
        weights[kind] = stack
    return weights, {"spectrum": "s_i = 1/(i+1)"}


def rel_errors(S: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """(max_i |s̃_i - s_i| / s_i, ‖s̃ - s‖ / ‖s‖) over the top-r values, worst layer."""
    elem = ((S - truth).abs() / truth).amax(dim=-1)
    norm = (S - truth).norm(dim=-1) / truth.norm(dim=-1)
    return float(elem.max()), float(norm.max())


def run_variant(name, weights, rank, device, fn):
    """Times fn over every kind (all layers); returns time and worst errors against the known spectrum."""
    sync(device)
    t0 = time.perf_counter()
    values = {kind: fn(W) for kind, W in weights.items()}
    sync(device)
    seconds = time.perf_counter() - t0
    worst_elem = worst_norm = 0.0
    for kind, S in values.items():
        truth = spectrum(rank, device).expand_as(S)
        e, n = rel_errors(S, truth)
        worst_elem, worst_norm = max(worst_elem, e), max(worst_norm, n)
    return {"variant": name, "seconds": seconds, "max_rel_err": worst_elem, "norm_rel_err": worst_norm, "values": values}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--oversample", type=int, default=8)
    p.add_argument("--niter", type=int, default=4)
    p.add_argument("--sample", type=int, default=3, help="layers checked against a full SVD (one per shape)")
    p.add_argument("--small", action="store_true", help="2 layers, hidden 256, intermediate 688 (smoke run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = args.device
    dims = {"h": 256, "i": 688} if args.small else {"h": 4096, "i": 11008}
    layers = 2 if args.small else 32
    r, os_, ni = args.rank, args.oversample, args.niter
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu"
    print(f"device {name}; torch {torch.__version__}; {layers} layers x {len(KINDS)} kinds = {layers * len(KINDS)} "
          f"weights (hidden {dims['h']}, intermediate {dims['i']}); rank {r}, q = r + {os_}, {ni} power iterations")
    t = time.perf_counter()
    weights, info = make_weights(dims, layers, dev, args.seed)
    sync(dev)
    params = sum(W.numel() for W in weights.values())
    print(f"weights: {params / 1e9:.2f} B parameters fp32, {info['spectrum']}, built in {time.perf_counter() - t:.1f} s")
    g = torch.Generator(device=dev).manual_seed(args.seed)

    def ours(W, oversample, niter, orth):
        q = r + oversample
        om = torch.randn((*W.shape[:-2], W.shape[-1], q), generator=g, device=dev)
        return randomized_svd(W, r, oversample, niter, omega=om, orth=orth)[1]

    variants = {
        f"torch.svd_lowrank (q = r + {os_}, niter {ni}), per layer": lambda W: torch.stack(
            [torch.svd_lowrank(w, q=r + os_, niter=ni)[1][:r] for w in W]),
        f"ours, QR (q = r + {os_}, niter {ni}), batched per kind": lambda W: ours(W, os_, ni, "qr"),
        f"ours, CholeskyQR2 (q = r + {os_}, niter {ni}), batched per kind": lambda W: ours(W, os_, ni, "cholqr2"),
        f"ours, CholeskyQR2 (q = r + 32, niter {ni}), batched per kind": lambda W: ours(W, 32, ni, "cholqr2"),
        f"ours, CholeskyQR2 (q = r + 64, niter {ni}), batched per kind": lambda W: ours(W, 64, ni, "cholqr2"),
        "ours, CholeskyQR2 (q = r + 64, niter 6), batched per kind": lambda W: ours(W, 64, 6, "cholqr2"),
    }
    warm = {"q_proj": weights["q_proj"][:2]}
    for fn in variants.values():  # cuBLAS / cuSOLVER handles and kernels, outside the timings
        run_variant("warm", warm, r, dev, fn)
    results = [run_variant(n, weights, r, dev, fn) for n, fn in variants.items()]

    # Exact SVD on a sample: one layer per shape; its time x 32 layers x kinds estimates all 224.
    sample = [("q_proj", 0), ("gate_proj", layers // 2), ("down_proj", layers - 1)][: args.sample]
    torch.linalg.svdvals(weights["q_proj"][0][:64, :64])  # solver warm-up
    exact_total = 0.0
    exact_vals = {}
    for kind, layer in sample:
        sync(dev)
        t = time.perf_counter()
        U, S, Vh = torch.linalg.svd(weights[kind][layer], full_matrices=False)
        sync(dev)
        dt = time.perf_counter() - t
        exact_vals[(kind, layer)] = S[:r]
        shape_count = sum(1 for k, (o, i) in KINDS.items() if (dims[o], dims[i]) == tuple(weights[kind].shape[1:]))
        exact_total += dt * layers * shape_count
        print(f"exact: {kind} layer {layer} {tuple(weights[kind].shape[1:])}: {dt:.3f} s; top-{r} vs known spectrum "
              f"max rel. err {rel_errors(S[:r], spectrum(r, dev))[0]:.1e}")

    print()
    print(f"| method (all {layers * len(KINDS)} weights, r={r}) | time | top-{r} max rel. err (worst layer) | "
          f"top-{r} ‖Δs‖/‖s‖ (worst layer) | vs full SVD on {len(sample)} sampled layers (max rel.) |")
    print("|---|---|---|---|---|")
    out = []
    for res in results:
        vs_exact = max(float(((res["values"][k][li] - ex).abs() / ex).max()) for (k, li), ex in exact_vals.items())
        print(f"| {res['variant']} | {res['seconds']:.3f} s | {res['max_rel_err']:.2e} | {res['norm_rel_err']:.2e} | {vs_exact:.2e} |")
        out.append({k: v for k, v in res.items() if k != "values"} | {"vs_exact_sample": vs_exact})
    print(f"| full SVD (torch.linalg.svd), estimated from the sample | {exact_total:.1f} s | exact | exact | — |")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"device": name, "rank": r, "oversample": os_, "niter": ni, "layers": layers,
                       "results": out, "exact_estimate_s": exact_total}, f, indent=1)


if __name__ == "__main__":
    main()
