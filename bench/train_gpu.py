"""Training throughput on a GPU: the LoRA-XS trainer, optimisation by optimisation, vs PEFT LoRA.

    npm run bench:train -- [--configs smollm2-135m,llama-1b] [--profile ops.txt] [--out rows.json]
    PYTHONPATH=scripts python3 bench/train_gpu.py …          (a GPU machine without Node)

Real architectures with random bf16 weights (throughput does not depend on the values), bf16
autocast, AdamW, q_proj and v_proj adapted. Every LoRA-XS row runs MultiUserTrainer.train()
itself — the worker's training path: per-example R gather, per-user losses, clip and table
step, the per-step loss read-back — on `--batch` different users per batch, each with
`--user-tokens` of data cut into `--seq-len` blocks (so some rows are padded, as in real jobs).
The ladder adds the fast path's features one at a time (naive = TrainConfig(fast=False));
then the full fast path with 1 user vs `--users` users in a batch. PEFT LoRA r=8 is the peer
(a plain loop, same loss code, fused AdamW). tokens/s counts real (unpadded) tokens for LoRA-XS
rows and every token for PEFT and forward rows (no padding there). LoRA-XS rows time `--steps` steps
after `--warmup` steps between two device syncs (compilation falls in the warm-up); the other
rows are medians of per-step times.
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

from loraxs.data import Blocks, pack_blocks  # noqa: E402
from loraxs.fast_path import compile_layers, store_frozen_base  # noqa: E402
from loraxs.lora_xs import Factors, find_target_modules, inject  # noqa: E402
from loraxs.job_io import UserTask  # noqa: E402
from loraxs.train import MultiUserTrainer, TrainConfig, lm_losses  # noqa: E402

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


def bench_peft(model, ids, mask, warmup, steps, compiled: bool = False) -> tuple[float, int]:
    """PEFT LoRA r=8 on q,v; `compiled`: what a PEFT user would turn on too, each decoder layer under
    torch.compile (the same options as the fast path) and the loss compiled, so the peer's ratio
    measures the method, not the compiler."""
    from peft import LoraConfig, get_peft_model

    m = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=ids.device.type == "cuda")
    undo = compile_layers(m.base_model.model) if compiled else (lambda: None)
    loss_fn = torch.compile(lm_losses) if compiled else lm_losses

    def step():
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=ids.device.type == "cuda"):
            logits = m(input_ids=ids, attention_mask=mask, use_cache=False).logits
            s, c = loss_fn(logits, ids, mask)
            loss = s.sum() / c.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss)  # the trainer reads its losses every step too

    t = time_steps(step, warmup, steps)
    n = sum(p.numel() for p in params)
    undo()
    m.unload()  # back to the plain model for the next variant
    return t, n


def guarded(fn, *a):
    """A row that fails (out of memory, a compiler error) is reported and skipped, not fatal."""
    try:
        return fn(*a)
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"error": f"{type(e).__name__}: {str(e)[:300]}"}), flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None


def user_blocks(vocab: int, tokens: int, seq_len: int, seed: int) -> Blocks:
    """A user's training set as the worker builds it: a token stream cut into blocks, the last one
    right-padded (20 k tokens at 512 = 39 full blocks + one of 32 tokens)."""
    g = torch.Generator().manual_seed(seed)
    return pack_blocks(torch.randint(3, vocab, (tokens,), generator=g).tolist(), seq_len)


def bench_loraxs(model, source, users: int, batch: int, seq_len: int, warmup: int, steps: int, device: str,
                 features: tuple[str, ...] | None, tokens_per_user: int) -> tuple[float, float]:
    """MultiUserTrainer.train() with `users` users, batch/users blocks each, all in every step.
    Returns (median step seconds, mean real (unpadded) tokens per step)."""
    if batch % users:
        raise ValueError(f"batch {batch} is not a multiple of users {users}")
    per_user = batch // users
    vocab = model.config.vocab_size
    tasks = [UserTask(f"u{u}", user_blocks(vocab, tokens_per_user, seq_len, u), steps=warmup + steps, lr=1e-3, seed=u,
                      batch_size=per_user) for u in range(users)]
    cfg = TrainConfig(device=device, progress=False, max_batch=batch, fast=features is not None and len(features) > 0,
                      features=features)
    trainer = MultiUserTrainer(model, source, "decoder", tasks, cfg)
    real = []
    take = trainer._gather

    def counting_gather(u, idx, split):  # the real tokens each step trains on
        blocks = take(u, idx, split)
        real.append(int(blocks.mask.sum()))
        return blocks

    trainer._gather = counting_gather
    calls, start = [0], [0.0]

    def tick() -> bool:  # called before each step; the clock starts after the warm-up steps
        if calls[0] == warmup:
            sync()
            start[0] = time.perf_counter()
        calls[0] += 1
        return False

    trainer.train(should_stop=tick)
    sync()  # sustained rate: the host is free to run ahead of the GPU between the two syncs
    return (time.perf_counter() - start[0]) / steps, sum(real) / (warmup + steps)


LADDER = [  # (label, features): each row adds one optimisation to the one above
    ("naive trainer (plain path)", ()),
    ("+ fused LoRA-XS branch", ("fused-branch",)),
    ("+ chunked output layer + loss", ("fused-branch", "chunked-loss")),
    ("+ no mask for right-padded rows", ("fused-branch", "chunked-loss", "no-mask")),
    ("+ no host-device syncs in a step", ("fused-branch", "chunked-loss", "no-mask", "no-sync")),
    ("+ compiled decoder layers and loss (= fast path)", ("fused-branch", "chunked-loss", "no-mask", "no-sync", "compile")),
]
FAST = LADDER[-1][1]


def profile_step(model, source, features, B, T, device, out: Path, label: str, tokens_per_user: int) -> None:
    """Top CUDA-time operators of 3 training steps (after 3 warm-up steps) into `out`."""
    from torch.profiler import ProfilerActivity, profile

    vocab = model.config.vocab_size
    tasks = [UserTask(f"u{u}", user_blocks(vocab, tokens_per_user, T, u), steps=6, lr=1e-3, seed=u, batch_size=1)
             for u in range(B)]
    cfg = TrainConfig(device=device, progress=False, max_batch=B, fast=bool(features), features=features)
    trainer = MultiUserTrainer(model, source, "decoder", tasks, cfg)
    prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
    step = {"n": 0}

    def tick() -> bool:
        step["n"] += 1
        if step["n"] == 4:
            sync()
            prof.__enter__()
        return False

    trainer.train(should_stop=tick)
    sync()
    prof.__exit__(None, None, None)
    table = prof.key_averages().table(sort_by="cuda_time_total" if device == "cuda" else "cpu_time_total", row_limit=25)
    with out.open("a") as f:
        f.write(f"\n## {label}: {B}x{T}, 3 steps\n{table}\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="smollm2-135m,llama-1b")
    p.add_argument("--batch", type=int, default=64, help="blocks per step of the ladder (one per user)")
    p.add_argument("--anchor-batch", type=int, default=32, help="naive and fast path again at this batch (0 = skip)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--users", type=int, default=64, help="users mixed in every batch of the last rows (batch raised to it)")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--user-tokens", type=int, default=20_000, help="each user's data (its last block is padded)")
    p.add_argument("--epochs", type=int, default=2, help="users per GPU-hour = tokens/s × 3600 / (user-tokens × epochs)")
    p.add_argument("--ladder", default="all", help="'all' or comma-separated ladder row numbers (0 = naive)")
    p.add_argument("--ladder-only", action="store_true", help="skip the anchor-batch, users and fp32 rows")
    p.add_argument("--profile", default=None, help="write the profiler's top operators of the naive and fast trainer here")
    p.add_argument("--peft-compiled", action="store_true", help="add the compiled PEFT peer row")
    p.add_argument("--peft-user-batch", type=int, default=4, help="with --peft-compiled: blocks a step of one user's PEFT run")
    p.add_argument("--results", action="store_true",
                   help="merge peft_compiled_tok_s and loraxs_fast_tok_s (first config) into bench/results/worker.json")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    name_dev = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    print(json.dumps({**vars(args), "device": name_dev, "torch": torch.__version__}), flush=True)
    per_user_tokens = args.user_tokens * args.epochs
    ladder = LADDER if args.ladder == "all" else [LADDER[int(i)] for i in args.ladder.split(",")]
    rows = []
    for name in args.configs.split(","):
        model = build(name, dev)
        B, T = args.batch, args.seq_len
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, model.config.vocab_size, (B, T), generator=g).to(dev)
        mask = torch.ones_like(ids)

        def add(setup, trainable, sec, tokens=B * T, users=1, batch=f"{B}x{T}"):
            if sec is None:  # out of memory: recorded, not fatal
                print(json.dumps({"config": name, "setup": setup, "error": "failed (see above)"}), flush=True)
                return
            rows.append({"config": name, "setup": setup, "users_per_batch": users, "batch": batch,
                         "trainable": trainable, "step_ms": sec * 1e3, "tokens_per_s": tokens / sec})
            print(json.dumps(rows[-1]), flush=True)

        add("forward only, no grad", 0, bench_forward(model, ids, mask, args.warmup, args.steps))
        bench_peft(model, ids, mask, args.warmup, args.steps)  # first run: allocator and kernel warm-up, discarded
        t, n = bench_peft(model, ids, mask, args.warmup, args.steps)
        add("PEFT LoRA r=8 (peer)", n, t)
        if args.peft_compiled:
            got = guarded(bench_peft, model, ids, mask, args.warmup + 2, args.steps, True)  # compiling falls in the warm-up
            add("PEFT LoRA r=8, compiled layers and loss (peer)", got and got[1], got and got[0])
            # PEFT trains one adapter per run: a user's job alone in the batch (its --peft-user-batch
            # blocks a step, the worker's default batch_size), compiled, as a PEFT user would run it.
            b = args.peft_user_batch
            got = guarded(bench_peft, model, ids[:b], mask[:b], args.warmup + 2, args.steps, True)
            add(f"PEFT LoRA r=8, compiled, one user's job alone ({b} blocks a step)", got and got[1], got and got[0],
                tokens=b * T, batch=f"{b}x{T}")
        source = inject(model, random_factors(model, args.rank))
        model.to(dev)  # the factor buffers too
        per_user = source.modules * args.rank**2
        run = lambda users, batch, feats: guarded(bench_loraxs, model, source, users, batch, T, args.warmup, args.steps, dev,  # noqa: E731
                                                 feats, args.user_tokens)
        run(B, B, ())  # warm-up, discarded (as for PEFT)
        for label, feats in ladder:
            got = run(B, B, feats)
            add(f"LoRA-XS r={args.rank}: {label}", per_user, got and got[0], tokens=got[1] if got else 0, users=B)
        A = 0 if args.ladder_only else args.anchor_batch
        if A:
            for label, feats in (LADDER[0], LADDER[-1]):
                got = run(A, A, feats)
                add(f"LoRA-XS r={args.rank}: {label}", per_user, got and got[0], tokens=got[1] if got else 0, users=A,
                    batch=f"{A}x{T}")
        U = max(args.users, B)
        for users in () if args.ladder_only else (1, U):
            got = run(users, U, FAST)
            add(f"LoRA-XS r={args.rank}: fast path, {users} user{'s' * (users > 1)}", per_user, got and got[0],
                tokens=got[1] if got else 0, users=users, batch=f"{U}x{T}")
        if not args.ladder_only:  # the fast path with the frozen base stored in fp32 (`--base-dtype fp32`)
            store_frozen_base(model, torch.float32)  # parameters only: the factors stay as inject() made them
            got = run(U, U, FAST)
            add(f"LoRA-XS r={args.rank}: fast path, base stored in fp32", per_user, got and got[0],
                tokens=got[1] if got else 0, users=U, batch=f"{U}x{T}")
            store_frozen_base(model, torch.bfloat16)
        if args.profile and dev == "cuda":
            for label, feats in (("fast", FAST),):  # the naive trainer's profile barely changes between runs
                guarded(profile_step, model, source, feats, B, T, dev, Path(args.profile), f"{name} {label}", args.user_tokens)
        del model, source
        if dev == "cuda":
            torch.cuda.empty_cache()
    print()
    print(f"| config | setup | users/batch | batch | trainable/user | step ms | tokens/s | vs naive | vs PEFT | "
          f"users/GPU-h ({per_user_tokens // 1000}k tok) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        peft = next(x for x in rows if x["config"] == r["config"] and x["setup"] == "PEFT LoRA r=8 (peer)")
        naive = next((x for x in rows if x["config"] == r["config"] and "naive" in x["setup"] and x["batch"] == r["batch"]), None)
        r["vs_peft"] = r["tokens_per_s"] / peft["tokens_per_s"]
        r["vs_naive"] = r["tokens_per_s"] / naive["tokens_per_s"] if naive and r["trainable"] else None
        r["users_per_gpu_hour"] = r["tokens_per_s"] * 3600 / per_user_tokens if r["trainable"] else 0
        vs_naive = f"{r['vs_naive']:.2f}x" if r["vs_naive"] else "—"
        print(f"| {r['config']} | {r['setup']} | {r['users_per_batch']} | {r['batch']} | {r['trainable']:,} | {r['step_ms']:.1f} | "
              f"{r['tokens_per_s'] / 1e3:.1f} k | {vs_naive} | {r['vs_peft']:.2f}x | {r['users_per_gpu_hour']:,.0f} |")
    for name in args.configs.split(","):
        sub = [r for r in rows if r["config"] == name and "fast path," in r["setup"]]
        if len(sub) == 2:
            print(f"{name}: {sub[1]['users_per_batch']} users vs 1 user at {sub[1]['batch']}: "
                  f"{sub[1]['tokens_per_s'] / sub[0]['tokens_per_s']:.3f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    if args.results:
        merge_worker_figures(rows, args.configs.split(",")[0], args.rank)
    return 0


def merge_worker_figures(rows: list[dict], config: str, rank: int) -> None:
    """The compiled PEFT peer and the fast path (same batch, same run) into bench/results/worker.json."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from worker_results import merge_results

    def rate(setup: str) -> float | None:
        return next((round(r["tokens_per_s"]) for r in rows if r["config"] == config and r["setup"] == setup), None)

    figures = {"peft_compiled_tok_s": rate("PEFT LoRA r=8, compiled layers and loss (peer)"),
               "loraxs_fast_tok_s": rate(f"LoRA-XS r={rank}: {LADDER[-1][0]}")}
    merge_results({k: v for k, v in figures.items() if v is not None})


if __name__ == "__main__":
    sys.exit(main())
