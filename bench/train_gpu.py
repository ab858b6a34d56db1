"""Training throughput on a GPU: LoRA-XS (the project's multi-user trainer) vs PEFT LoRA.

    PYTHONPATH=scripts python bench/train_gpu.py [--configs smollm2-135m,llama-1b] [--steps 8] [--out results.json]

Real architectures with random bf16 weights (throughput does not depend on the values), bf16
autocast, AdamW, q_proj and v_proj adapted, batch of `--batch` × `--seq-len` tokens. LoRA-XS
runs through MultiUserTrainer.train() itself (per-example R gather, per-user losses, per-user
clip, one table step) with 1 user and with N users mixed in every batch; PEFT LoRA r=8 runs a
plain loop with the same loss code and torch's fused AdamW. Each row is the median step time
of `--steps` steps after `--warmup` steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from loraxs.data import Blocks  # noqa: E402
from loraxs.lora_xs import Factors, find_target_modules, inject  # noqa: E402
from loraxs.train import MultiUserTrainer, TrainConfig, UserTask, lm_losses  # noqa: E402

CONFIGS = {
    # SmolLM2-135M-Instruct's real configuration (models/smollm2-135m/manifest.json)
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, vocab_size=49152, max_position_embeddings=8192,
                         tie_word_embeddings=True, rope_theta=100000.0),
    # a ~1.1B Llama shape (TinyLlama-1.1B's): 22 layers, 2048 wide, GQA 32/4, vocab 32000
    "llama-1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                     num_key_value_heads=4, vocab_size=32000, max_position_embeddings=4096,
                     tie_word_embeddings=False, rope_theta=10000.0),
}
CONFIGS["tiny"] = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=512, max_position_embeddings=512)  # CPU smoke test
TARGETS = "q_proj,v_proj"


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def build(name: str, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(**CONFIGS[name])
    cfg._attn_implementation = "sdpa"
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16 if device == "cuda" else torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def random_factors(model, rank: int) -> Factors:
    """Orthonormal-ish random factors of the right shapes (SVD of random weights costs time, changes nothing)."""
    names = find_target_modules(model, TARGETS)
    g = torch.Generator().manual_seed(0)
    down, up = {}, {}
    for n in names:
        out_f, in_f = model.get_submodule(n).weight.shape
        down[n] = torch.randn(rank, in_f, generator=g) / in_f**0.5
        up[n] = torch.linalg.qr(torch.randn(out_f, rank, generator=g))[0]
    return Factors(names, down, up, rank, {}, "")


def time_steps(step_fn, warmup: int, steps: int) -> float:
    times = []
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        step_fn()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_forward(model, ids, mask, warmup, steps) -> float:
    def step():
        with torch.no_grad(), torch.autocast(ids.device.type, dtype=torch.bfloat16):
            model(input_ids=ids, attention_mask=mask).logits.float()

    return time_steps(step, warmup, steps)


def bench_peft(model, ids, mask, warmup, steps) -> tuple[float, int]:
    from peft import LoraConfig, get_peft_model

    m = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=ids.device.type == "cuda")

    def step():
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=ids.device.type == "cuda"):
            logits = m(input_ids=ids, attention_mask=mask).logits
            s, c = lm_losses(logits, ids, mask)
            loss = s.sum() / c.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss)  # the trainer reads its losses every step too

    t = time_steps(step, warmup, steps)
    n = sum(p.numel() for p in params)
    m.unload()  # back to the plain model for the next variant
    return t, n


def guarded(fn, *a):
    try:
        return fn(*a)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def bench_loraxs(model, source, users: int, batch: int, seq_len: int, warmup: int, steps: int, device: str) -> float:
    """MultiUserTrainer.train() with `users` users, batch/users examples each, all in every step."""
    if batch % users:
        raise ValueError(f"batch {batch} is not a multiple of users {users}")
    per_user = batch // users
    g = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    tasks = []
    for u in range(users):
        ids = torch.randint(0, vocab, (per_user * 4, seq_len), generator=g)
        tasks.append(UserTask(f"u{u}", Blocks(ids, torch.ones_like(ids)), steps=warmup + steps, lr=1e-3, seed=u,
                              batch_size=per_user))
    trainer = MultiUserTrainer(model, source, "decoder", tasks, TrainConfig(device=device, progress=False, max_batch=batch))
    stamps = []

    def tick() -> bool:
        sync()
        stamps.append(time.perf_counter())
        return False

    trainer.train(should_stop=tick)
    sync()
    stamps.append(time.perf_counter())
    deltas = [b - a for a, b in zip(stamps, stamps[1:])][warmup:]
    return statistics.median(deltas)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="smollm2-135m,llama-1b")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--users", type=int, default=64, help="users mixed in every batch (batch is raised to a multiple)")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--tokens-per-user", type=int, default=40_000, help="20k tokens x 2 epochs")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    name_dev = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    print(json.dumps({**vars(args), "device": name_dev, "torch": torch.__version__}), flush=True)
    rows = []
    for name in args.configs.split(","):
        model = build(name, dev)
        B, T = args.batch, args.seq_len
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, model.config.vocab_size, (B, T), generator=g).to(dev)
        mask = torch.ones_like(ids)
        tok = B * T

        def add(setup, trainable, sec, tokens=tok, users=1):
            if sec is None:  # out of memory: recorded, not fatal
                print(json.dumps({"config": name, "setup": setup, "error": "out of memory"}), flush=True)
                return
            rows.append({"config": name, "setup": setup, "users_per_batch": users, "batch": f"{tokens // T}x{T}",
                         "trainable": trainable, "step_ms": sec * 1e3, "tokens_per_s": tokens / sec})
            print(json.dumps(rows[-1]), flush=True)

        add("forward only, no grad", 0, bench_forward(model, ids, mask, args.warmup, args.steps))
        bench_peft(model, ids, mask, args.warmup, args.steps)  # first run: allocator and kernel warm-up, discarded
        t, n = bench_peft(model, ids, mask, args.warmup, args.steps)
        add("PEFT LoRA r=8", n, t)
        source = inject(model, random_factors(model, args.rank))
        model.to(dev)  # the factor buffers too
        per_user = source.modules * args.rank**2
        bench_loraxs(model, source, 1, B, T, args.warmup, args.steps, dev)  # warm-up, discarded (as for PEFT)
        add(f"LoRA-XS r={args.rank}, 1 user", per_user, bench_loraxs(model, source, 1, B, T, args.warmup, args.steps, dev))
        add(f"LoRA-XS r={args.rank}, {B} users", per_user,
            bench_loraxs(model, source, B, B, T, args.warmup, args.steps, dev), users=B)
        U = args.users
        BU = max(B, U)
        add(f"LoRA-XS r={args.rank}, 1 user", per_user, guarded(bench_loraxs, model, source, 1, BU, T, args.warmup, args.steps, dev),
            tokens=BU * T)
        add(f"LoRA-XS r={args.rank}, {U} users", per_user,
            guarded(bench_loraxs, model, source, U, BU, T, args.warmup, args.steps, dev), tokens=BU * T, users=U)
        del model, source
        torch.cuda.empty_cache()
    print()
    print(f"| config | setup | users/batch | batch | trainable/user | step ms | tokens/s | vs PEFT | users/GPU-h ({args.tokens_per_user // 1000}k tok) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        peft = next(x for x in rows if x["config"] == r["config"] and x["setup"].startswith("PEFT"))
        ratio = r["tokens_per_s"] / peft["tokens_per_s"]
        uph = r["tokens_per_s"] * 3600 / args.tokens_per_user if r["trainable"] else 0
        r.update(vs_peft=ratio, users_per_gpu_hour=uph)
        print(f"| {r['config']} | {r['setup']} | {r['users_per_batch']} | {r['batch']} | {r['trainable']:,} | {r['step_ms']:.1f} | "
              f"{r['tokens_per_s'] / 1e3:.1f} k | {ratio:.2f}x | {uph:,.0f} |")
    for name in args.configs.split(","):
        sub = [r for r in rows if r["config"] == name and r["setup"].startswith("LoRA-XS")]
        if len(sub) < 4:
            continue
        one, many = sub[-2], sub[-1]
        print(f"{name}: {many['users_per_batch']} users vs 1 user at {many['batch']}: {many['tokens_per_s'] / one['tokens_per_s']:.3f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
