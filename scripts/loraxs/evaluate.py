"""Inference checks for adapters: held-out perplexity (decoders), accuracy / F1 (encoders).

    python -m loraxs.evaluate --model-dir models/smollm2-135m --adapter models/smollm2-135m/adapters/x.safetensors --text held.txt
    python -m loraxs.evaluate --model-dir models/smollm2-135m --text held.txt          # base model (R = 0)
    python -m loraxs.evaluate --model-dir models/minilm-l6 --adapter a.safetensors --labels test.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from torch import nn

from .data import Blocks, parse_job_data, text_blocks
from .lora_xs import RSource


@torch.no_grad()
def nll(model: nn.Module, source: RSource, blocks: Blocks, R: torch.Tensor | None = None, batch_size: int = 8,
        device: str | torch.device = "cpu") -> tuple[float, int]:
    """Summed next-token NLL and token count over `blocks`, with one adapter R [M, r, r] (None = base)."""
    from .train import lm_losses

    dev = torch.device(device)
    source.set(None if R is None else R.to(dev, torch.float32))
    total, count = 0.0, 0
    try:
        for k in range(0, len(blocks), batch_size):
            ids, mask = blocks.ids[k : k + batch_size].to(dev), blocks.mask[k : k + batch_size].to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                logits = model(input_ids=ids, attention_mask=mask).logits
            s, c = lm_losses(logits, ids, mask)
            total += float(s.double().sum())
            count += int(c.sum())
    finally:
        source.set(None)
    return total, count


def perplexity(model: nn.Module, source: RSource, blocks: Blocks, R: torch.Tensor | None = None, batch_size: int = 8,
               device: str | torch.device = "cpu") -> float:
    """exp(token-mean NLL) of `blocks` under base + up·R·down."""
    total, count = nll(model, source, blocks, R, batch_size, device)
    if count == 0:
        raise ValueError("no target tokens to evaluate")
    return math.exp(total / count)


@torch.no_grad()
def predict(model: nn.Module, source: RSource, examples, R: torch.Tensor | None, head_weight: torch.Tensor,
            head_bias: torch.Tensor, batch_size: int = 32, device: str | torch.device = "cpu") -> torch.Tensor:
    """Class indices for tokenized examples (job_io.Examples): head on the sentence embedding."""
    from .train import mean_pool

    dev = torch.device(device)
    source.set(None if R is None else R.to(dev, torch.float32))
    preds = []
    try:
        for k in range(0, len(examples), batch_size):
            ids = examples.ids[k : k + batch_size].to(dev)
            mask = examples.mask[k : k + batch_size].to(dev)
            tt = examples.type_ids[k : k + batch_size].to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
            emb = mean_pool(hidden, mask)
            logits = emb @ head_weight.to(dev, torch.float32).T + head_bias.to(dev, torch.float32)
            preds.append(logits.argmax(-1).cpu())
    finally:
        source.set(None)
    return torch.cat(preds)


def classification_metrics(pred: torch.Tensor, gold: torch.Tensor, positive: int | None = None) -> dict[str, float]:
    """Accuracy and F1: binary F1 of class `positive` when given, else macro F1 over the classes seen."""
    pred, gold = pred.long().cpu(), gold.long().cpu()
    acc = float((pred == gold).float().mean())

    def f1(c: int) -> float:
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)

    if positive is not None:
        return {"accuracy": acc, "f1": f1(positive)}
    classes = sorted(set(gold.tolist()) | set(pred.tolist()))
    return {"accuracy": acc, "f1": sum(f1(c) for c in classes) / len(classes)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loraxs.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--adapter", default=None, help="adapter file; omitted: the base model (R = 0)")
    p.add_argument("--text", nargs="*", default=[], help="held-out text files (decoders)")
    p.add_argument("--labels", default=None, help="job data JSON of kind 'labels' (encoders)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    args = p.parse_args(argv)

    from .format import load_adapter
    from .models import load_prepared

    base, factors, source, manifest = load_prepared(args.model_dir)
    base.model.to(args.device)
    R = head = None
    if args.adapter:
        from .job_io import expectations

        adapter = load_adapter(args.adapter, expect=expectations(manifest))
        R = torch.from_numpy(adapter.R).float()
        if adapter.head is not None:
            head = {"weight": torch.from_numpy(adapter.head.weight), "bias": torch.from_numpy(adapter.head.bias),
                    "labels": adapter.head.labels or [str(i) for i in range(adapter.head.classes)]}
    result: dict[str, object] = {"model": manifest["id"], "adapter": args.adapter}
    if base.family == "decoder":
        if not args.text:
            p.error("--text is required for a decoder")
        texts = [Path(t).read_text(encoding="utf-8") for t in args.text]
        blocks = text_blocks(base.tokenizer, texts, args.seq_len)
        result.update(perplexity=perplexity(base.model, source, blocks, R, args.batch_size, args.device), tokens=blocks.tokens)
    else:
        from .job_io import label_examples

        if not args.labels or head is None:
            p.error("an encoder needs --labels and an adapter with a head")
        data = parse_job_data(json.loads(Path(args.labels).read_text()), "encoder")
        classes = list(head["labels"])
        unknown = sorted(set(data.labels) - set(classes))
        if unknown:
            p.error(f"label {unknown[0]!r} is not one of the adapter's labels {classes}")
        ex = label_examples(base.tokenizer, data.texts, data.labels, classes, args.seq_len)
        pred = predict(base.model, source, ex, R, head["weight"], head["bias"], args.batch_size, args.device)
        result.update(classification_metrics(pred, ex.labels), examples=len(ex))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
