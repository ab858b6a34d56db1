"""Numeric fixtures for the client tests: `reference.json` + `reference-R.safetensors` + adapters.

Cases: R = zeros (the plain base model) and two random adapters. Each random R is stored
twice: as tensor `<n>` of `reference-R.safetensors` (F32 [M, r, r]; a case names it
`reference-R.safetensors#<n>`) and as a real adapter file `reference-adapter-<n>.safetensors`
(F32, so the values are identical). Outputs come from PyTorch with the LoRA-XS branch:
last-position logits and 8 greedy tokens for decoders, the sentence embedding for encoders.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from .export_onnx import mean_pool_normalize
from .lora_xs import RSource, canonical_safetensors

REFERENCE_FILE = "reference.json"
REFERENCE_R_FILE = "reference-R.safetensors"
REFERENCE_TEXT = "The quick brown fox jumps over the lazy dog. Personal models fit in a few kilobytes"
REFERENCE_TOLERANCE = 1e-4  # client (onnxruntime wasm/CPU) vs PyTorch; observed ~1e-6 on the tiny fp32 models
CHECK_MARGIN = 10  # a model whose own ONNX check saw error e gets tolerance max(1e-4, 10·e) (real logits are ~30)
REFERENCE_R_STD = 0.2  # large enough to change the greedy continuation of the tiny models
GREEDY_TOKENS = 8


def reference_tolerance(check_error: float) -> float:
    """1e-4, or 10x the error prepare's own ONNX check measured, rounded up to 1 significant digit."""
    import math

    t = max(REFERENCE_TOLERANCE, CHECK_MARGIN * check_error)
    e = math.floor(math.log10(t))
    return float(f"{math.ceil(t / 10**e) * 10**e:.1g}")


def adapter_file(n: int) -> str:
    return f"reference-adapter-{n}.safetensors"


def _R(modules: int, rank: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn((modules, rank, rank), generator=g) * REFERENCE_R_STD).contiguous()


def _floats(x: torch.Tensor) -> list:
    """float32 values as the shortest decimal that reads back to the same float32."""
    import numpy as np

    return [[float(np.format_float_positional(v, unique=True, trim="-")) for v in row] for row in x.float().numpy()]


def _greedy(model: nn.Module, ids: torch.Tensor, steps: int) -> tuple[list[int], float]:
    """Greedy continuation (no cache: the plainest correct reference) and its smallest top-1/top-2 gap."""
    out: list[int] = []
    margin = float("inf")
    cur = ids
    for _ in range(steps):
        logits = model(input_ids=cur, attention_mask=torch.ones_like(cur)).logits[0, -1]
        top = torch.topk(logits, 2)
        margin = min(margin, float(top.values[0] - top.values[1]))
        nxt = int(top.indices[0])
        out.append(nxt)
        cur = torch.cat([cur, torch.tensor([[nxt]])], dim=1)
    return out, margin


def write_reference(
    model: nn.Module,
    source: RSource,
    tokenizer,
    family: str,
    model_id: str,
    factors_digest: str,
    out_dir: str | Path,
    seed: int = 0,
    check_error: float = 0.0,
    log=print,
) -> list[str]:
    """Writes the fixtures into out_dir; returns the file names written (for the manifest)."""
    out_dir = Path(out_dir)
    ids = torch.tensor([tokenizer(REFERENCE_TEXT)["input_ids"]], dtype=torch.int64)
    mask = torch.ones_like(ids)
    Rs = {1: _R(source.modules, source.rank, seed + 101), 2: _R(source.modules, source.rank, seed + 202)}
    raw = save({str(n): R for n, R in Rs.items()}, metadata={
        "format": "loraxs-reference-R", "model": model_id, "factors": factors_digest})
    (out_dir / REFERENCE_R_FILE).write_bytes(canonical_safetensors(raw))  # same content, same bytes
    files = [REFERENCE_FILE, REFERENCE_R_FILE]
    try:
        from .format import save_adapter
    except ImportError:  # the adapter codec is optional for the fixtures themselves
        save_adapter = None
    if save_adapter is not None:
        for n, R in Rs.items():
            save_adapter(out_dir / adapter_file(n), model=model_id, factors=factors_digest, rank=source.rank,
                         modules=source.modules, R=R, metadata={"source": "import", "note": "reference fixture"},
                         dtype="F32")
            files.append(adapter_file(n))
    cases = []
    with torch.no_grad():
        for name, ref, R in (("base", "zeros", torch.zeros_like(Rs[1])),
                             *((f"random-{n}", f"{REFERENCE_R_FILE}#{n}", R) for n, R in Rs.items())):
            source.set(R)
            case = {"name": name, "R": ref}
            if save_adapter is not None and ref != "zeros":
                case["adapter"] = adapter_file(int(ref.rsplit("#", 1)[1]))
            case["input_ids"] = ids.tolist()
            case["attention_mask"] = mask.tolist()
            if family == "decoder":
                logits = model(input_ids=ids, attention_mask=mask).logits[:, -1]
                case["logits_last"] = _floats(logits)
                case["greedy"], case["greedy_margin"] = _greedy(model, ids, GREEDY_TOKENS)
                log(f"reference: {name}: greedy {case['greedy']} (smallest top-1/top-2 gap {case['greedy_margin']:.2e})")
            else:
                tt = torch.zeros_like(ids)
                h = model(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
                case["token_type_ids"] = tt.tolist()
                case["embedding"] = _floats(mean_pool_normalize(h, mask))
                log(f"reference: {name}: embedding[:4] {case['embedding'][0][:4]}")
            cases.append(case)
    source.set(None)
    doc = {"model": model_id, "factors": factors_digest, "cases": cases, "text": REFERENCE_TEXT,
           "tolerance": reference_tolerance(check_error), "greedy_tokens": GREEDY_TOKENS if family == "decoder" else 0}
    (out_dir / REFERENCE_FILE).write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    return files
