"""On-device vs worker training quality: one State of the Union president, the same token budget.

    PYTHONPATH=scripts python bench/quality_on_device.py worker --out-dir DIR [--user barack_obama]
    node --experimental-strip-types bench/quality-on-device.ts --dir <model folder with onnx_train> --plan DIR/plan.json --out DIR/client.safetensors
    PYTHONPATH=scripts python bench/quality_on_device.py score --out-dir DIR --adapters DIR/worker.safetensors,DIR/client.safetensors

`worker`: the GPU worker's trainer (loraxs.train.MultiUserTrainer, run here on the CPU with
`TrainConfig(device="cpu")`) trains the president's R on his training addresses
(data.sotu_presidents: the most recent addresses are held out) packed into --seq-len blocks,
--steps x --batch blocks, AdamW at --lr with warm-up + cosine to 10 %, clip 1, no early stopping.
It writes worker.safetensors and plan.json: the exact blocks the trainer drew, in its order
(loraxs.train.Stream with the user's seed), its initial R, and its schedule, so that the client
trains on the same rows, from the same R, with the same schedule.

`score`: held-out perplexity with loraxs.evaluate (the same evaluator for every adapter) on the
first --heldout-max-blocks blocks of --eval-seq-len tokens of the president's held-out addresses,
for the base model (R = 0) and each adapter; writes score.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from loraxs.data import Blocks, sotu_presidents, text_blocks  # noqa: E402


def president(name: str):
    for p in sotu_presidents():
        if p.name == name:
            return p
    raise SystemExit(f"unknown president {name!r} (or fewer than 20,000 words)")


def worker(a) -> int:
    from loraxs.lora_xs import init_R
    from loraxs.models import load_prepared
    from loraxs.job_io import UserTask, encode_result, user_seed
    from loraxs.train import MultiUserTrainer, Stream, TrainConfig, lr_at

    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    base, _factors, source, manifest = load_prepared(a.model_dir)
    pres = president(a.user)
    blocks = text_blocks(base.tokenizer, pres.train, a.seq_len)
    seed = user_seed(a.seed, pres.name)
    cfg = TrainConfig(device="cpu", progress=a.progress)
    task = UserTask(pres.name, blocks, None, a.steps, a.lr, seed, a.batch)
    # The blocks the trainer will draw, in its order: its Stream is seeded the same way.
    stream = Stream(len(blocks), seed)
    order = [int(i) for _ in range(a.steps) for i in stream.take(a.batch)]
    R0 = init_R(source.modules, source.rank, seed=seed)
    print(f"{pres.name}: {len(blocks)} training blocks of {a.seq_len} ({blocks.tokens:,} tokens, "
          f"{pres.train_years[0]}-{pres.train_years[-1]}); {a.steps} steps x {a.batch} = "
          f"{a.steps * a.batch * a.seq_len:,} tokens; loaded in {time.time() - t0:.0f} s", flush=True)
    t1 = time.time()
    [result] = MultiUserTrainer(base.model, source, "decoder", [task], cfg).train()
    seconds = time.time() - t1
    if not torch.equal(R0, init_R(source.modules, source.rank, seed=seed)):
        raise RuntimeError("init_R is not deterministic")
    note = f"SOTU {pres.name}: {a.steps} steps x {a.batch} x {a.seq_len} tokens, lr {a.lr:g} (worker trainer, CPU)"
    (out / "worker.safetensors").write_bytes(encode_result(result, manifest, source="worker", note=note))
    warmup = max(1, round(cfg.warmup_frac * a.steps)) if cfg.warmup_frac > 0 else 0
    plan = {
        "user": pres.name,
        "seq": a.seq_len,
        "batch": a.batch,
        "steps": a.steps,
        "lr": a.lr,
        "warmup_steps": warmup,
        "min_lr_ratio": cfg.min_lr_frac,
        "clip": cfg.grad_clip,
        "betas": list(cfg.betas),
        "eps": cfg.eps,
        "weight_decay": cfg.weight_decay,
        "worker_lrs": [lr_at(s, a.steps, a.lr, cfg) for s in range(1, a.steps + 1)],
        "R0": R0.flatten().tolist(),
        "rows": [{"ids": blocks.ids[i].tolist(), "mask": blocks.mask[i].tolist()} for i in order],
        "train_texts": pres.train,
        "worker": {"seconds": round(seconds, 1), "train_loss_last": result.train_loss, "steps": result.steps,
                   "fast": cfg.fast, "history": result.history},
    }
    (out / "plan.json").write_text(json.dumps(plan) + "\n")
    print(f"worker: {result.steps} steps in {seconds:.0f} s; last-{cfg.eval_every} mean train loss "
          f"{result.train_loss:.4f}; wrote {out / 'worker.safetensors'} and {out / 'plan.json'}", flush=True)
    return 0


def score(a) -> int:
    from loraxs.format import load_adapter
    from loraxs.evaluate import perplexity
    from loraxs.models import load_prepared
    from loraxs.job_io import expectations

    base, _factors, source, manifest = load_prepared(a.model_dir)
    pres = president(a.user)
    held = text_blocks(base.tokenizer, pres.heldout, a.eval_seq_len)
    if a.heldout_max_blocks:
        held = Blocks(held.ids[: a.heldout_max_blocks], held.mask[: a.heldout_max_blocks])
    rows = [{"adapter": "base (R = 0)", "ppl": perplexity(base.model, source, held, None, 4)}]
    for path in [p for p in a.adapters.split(",") if p]:
        ad = load_adapter(path, expect=expectations(manifest))
        R = torch.from_numpy(ad.R).float()
        rows.append({"adapter": path, "source": ad.metadata.get("source"), "steps": ad.metadata.get("steps"),
                     "ppl": perplexity(base.model, source, held, R, 4)})
    first = rows[1]["ppl"] if len(rows) > 1 else None
    for r in rows:
        r["vs_base"] = r["ppl"] / rows[0]["ppl"] - 1
        if first is not None:
            r["vs_first_adapter"] = r["ppl"] / first - 1
    report = {"user": pres.name, "heldout_years": pres.heldout_years, "heldout_tokens": held.tokens,
              "eval_seq_len": a.eval_seq_len, "blocks": len(held), "rows": rows}
    Path(a.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(a.out_dir) / "score.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{pres.name}: held out {pres.heldout_years}, {held.tokens} tokens ({len(held)} x {a.eval_seq_len})")
    for r in rows:
        extra = "" if first is None else f", {100 * r['vs_first_adapter']:+.2f} % vs the first adapter"
        print(f"  {r['adapter']}: ppl {r['ppl']:.3f} ({100 * r['vs_base']:+.2f} % vs base{extra})")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["worker", "score"])
    p.add_argument("--model-dir", default=str(ROOT / "models" / "smollm2-135m"))
    p.add_argument("--user", default="barack_obama")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true")
    p.add_argument("--adapters", default="", help="score: comma-separated adapter files")
    p.add_argument("--eval-seq-len", type=int, default=256)
    p.add_argument("--heldout-max-blocks", type=int, default=4)
    a = p.parse_args()
    return worker(a) if a.command == "worker" else score(a)


if __name__ == "__main__":
    sys.exit(main())
