"""Held-out SOTU perplexity of Gemma 3 270M with and without <bos> at the start of each block, base and adapters.

    PYTHONPATH=scripts .venv/bin/python bench/gemma3/bos_check.py [--adapters DIR]

The training and evaluation blocks of loraxs.data.text_blocks carry no <bos>; Gemma expects it first. This
measures what that costs: each president's first --blocks held-out blocks of --seq-len tokens (as
bench/quality_sotu.py's --heldout-max-blocks/--eval-seq-len cut them), scored as they are and with <bos>
prepended, with R = 0 and with DIR/<president>.safetensors when given (hyphens for '_', as demo users are named).
Figures in docs/training.md (2-core CPU, about 6 minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from loraxs.format import load_adapter  # noqa: E402
from loraxs.data import Blocks, sotu_presidents, text_blocks  # noqa: E402
from loraxs.evaluate import nll  # noqa: E402
from loraxs.lora_xs import inject, load_factors  # noqa: E402
from loraxs.models import gemma3_gguf, load_base  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", default=str(ROOT / "models" / "gemma3-270m"))
    p.add_argument("--adapters", default=None, help="folder of <president>.safetensors adapters")
    p.add_argument("--users", default="abraham_lincoln,barack_obama,ronald_reagan")
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=256)
    args = p.parse_args()
    base = load_base(gemma3_gguf())
    tok, model = base.tokenizer, base.model.eval()
    source = inject(model, load_factors(Path(args.model_dir) / "factors.safetensors"))
    presidents = {x.name: x for x in sotu_presidents(min_words=20_000)}
    rows = {}
    for name in args.users.split(","):
        held = text_blocks(tok, presidents[name].heldout, args.seq_len)
        held = Blocks(held.ids[: args.blocks], held.mask[: args.blocks])
        n = len(held)
        with_bos = Blocks(torch.cat([torch.full((n, 1), tok.bos_token_id), held.ids], 1),
                          torch.cat([torch.ones(n, 1, dtype=torch.long), held.mask], 1))
        adapters = {"base": None}
        if args.adapters:
            a = load_adapter(Path(args.adapters) / f"{name.replace('_', '-')}.safetensors")
            adapters["adapter"] = torch.from_numpy(np.asarray(a.R, dtype=np.float32))
        row = {}
        with torch.no_grad():
            for label, blocks in (("no_bos", held), ("bos", with_bos)):
                for which, R in adapters.items():
                    s, c = nll(model, source, blocks, R, batch_size=4)
                    row[f"{label}_{which}"] = round(math.exp(s / c), 2)
        rows[name] = row
        print(name, json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
