"""A worker's first training step, cold (nothing compiled yet) and warm (compile artifacts loaded).

    PYTHONPATH=scripts python3 bench/first_step.py --model-dir models/smollm2-135m --device cuda [--results]
    npm run bench:first-step -- --model-dir <prepared tiny-llama> --device cpu --compile on   (a CPU check)

Each measurement runs in a fresh process with its own empty inductor and triton caches, as on a
fresh machine: the cold one compiles and saves the worker's compile cache (loraxs.compile_cache)
into a temporary folder, the warm one loads it. Both load the model the way the worker does
(Worker.load) and train `--users` users of `--seq-len`-token blocks, `--batch-size` blocks each
per step (the worker's defaults: a full claim of 32 jobs, 4 × 256 tokens), with its held-out split
and its evaluation of the start. first_step_s counts from the model being loaded to the first
training step done (device synced): cache load + trainer set-up + evaluation of the start +
step 1, compilation included. `--warm-users N` trains N users in the warm run instead (the cold
run's cache must cover any number of rows: loraxs.fast_path.SHAPE_POLICY); each run reports
inductor's and AOTAutograd's cache hits and misses (a warm run should miss nothing).
`--results` merges first_step_s_cold / _warm into bench/results/worker.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))
sys.path.insert(0, str(HERE))


def child(args) -> dict:
    import torch

    from loraxs.data import Blocks, pack_blocks
    from loraxs.job_io import UserTask
    from loraxs.train import MultiUserTrainer, TrainConfig
    from loraxs.worker import COMPILE_MODES, Worker

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    from loraxs.compile_cache import CompileCache, cache_key
    from loraxs.fast_path import COMPILE_OPTIONS

    folder = Path(args.model_dir)
    worker = Worker(None, folder.parent, device=args.device, compile=args.compile, use_compile_cache=False,
                    models=[folder.name])
    t0 = time.monotonic()
    base, source, manifest = worker.load(folder.name)
    start = time.monotonic()  # the model is loaded: the first step's clock starts here, with the cache's load
    key = cache_key(manifest, args.device, worker.base_dtype, COMPILE_OPTIONS)
    cache = CompileCache(Path(args.cache), key, lambda line: print(f"[worker] {line}", flush=True))
    if args.mode == "warm":
        cache.load()
    vocab = base.model.config.vocab_size
    tasks = []
    users = args.warm_users if args.mode == "warm" and args.warm_users else args.users
    for u in range(users):  # random tokens: step time does not depend on the text
        g = torch.Generator().manual_seed(u)
        blocks = pack_blocks(torch.randint(3, vocab, (args.user_tokens,), generator=g).tolist(), args.seq_len)
        n_val = max(1, len(blocks) // 10)
        tasks.append(UserTask(f"u{u}", Blocks(blocks.ids[n_val:], blocks.mask[n_val:]), Blocks(blocks.ids[:n_val], blocks.mask[:n_val]),
                              steps=2, lr=1e-2, seed=u, batch_size=args.batch_size))
    cfg = TrainConfig(device=args.device, val_frac=0.1, progress=False, compile=COMPILE_MODES[args.compile])
    marks: list[float] = []

    def tick() -> bool:  # before each step: the second call comes after step 1
        sync()
        marks.append(time.monotonic())
        return False

    trainer = MultiUserTrainer(base.model, source, manifest["family"], tasks, cfg)
    trainer.train(should_stop=tick)
    sync()
    first = (marks[1] if len(marks) > 1 else time.monotonic()) - start
    saved = cache.save() if args.mode == "cold" else False
    from torch._dynamo.utils import counters

    caches = {k: n for group in ("inductor", "aot_autograd") for k, n in counters[group].items() if "cache_" in k}
    return {"mode": args.mode, "users": users, "first_step_s": round(first, 3), "model_load_s": round(start - t0, 3),
            "cache_loaded": cache.loaded, "cache_saved": saved, "caches": caches, "graphs": counters["stats"]["unique_graphs"],
            "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "torch": torch.__version__}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True, help="a prepared model folder (manifest.json + factors.safetensors)")
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--compile", default="auto", choices=["auto", "on"], help="on: compile on the CPU too (a check)")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--warm-users", type=int, default=None, help="users of the warm run (default: --users)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--user-tokens", type=int, default=20_000)
    p.add_argument("--results", action="store_true", help="merge the two figures into bench/results/worker.json")
    p.add_argument("--keep-cache", default=None, help="copy the compile cache the cold run saved into this folder (a worker's --compile-cache)")
    p.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        print("FIRST_STEP " + json.dumps(child(args)), flush=True)
        return 0
    # The model's weights must be loadable before anything is timed.
    if not (Path(args.model_dir) / "manifest.json").is_file():
        p.error(f"--model-dir {args.model_dir}: no manifest.json there")
    out = {}
    with tempfile.TemporaryDirectory(prefix="first-step-") as tmp:
        for mode in ("cold", "warm"):
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": f"{tmp}/inductor-{mode}", "TRITON_CACHE_DIR": f"{tmp}/triton-{mode}",
                   "PYTHONPATH": os.pathsep.join([str(HERE.parent / "scripts"), os.environ.get("PYTHONPATH", "")])}
            cmd = [sys.executable, __file__, "--model-dir", args.model_dir, "--device", args.device, "--compile", args.compile,
                   "--users", str(args.users), "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
                   "--user-tokens", str(args.user_tokens), "--mode", mode, "--cache", f"{tmp}/compile-cache"]
            if args.warm_users:
                cmd += ["--warm-users", str(args.warm_users)]
            t0 = time.monotonic()
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("FIRST_STEP ")]
            for ln in r.stdout.splitlines():
                if ln.startswith("[worker"):
                    print(f"  {mode}: {ln}", flush=True)
            if r.returncode != 0 or not lines:
                print(r.stdout[-3000:] + r.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"the {mode} run failed (exit {r.returncode})")
            out[mode] = json.loads(lines[0][len("FIRST_STEP "):])
            out[mode]["process_s"] = round(time.monotonic() - t0, 1)
            print(json.dumps(out[mode]), flush=True)
        if args.keep_cache:
            shutil.copytree(f"{tmp}/compile-cache", args.keep_cache, dirs_exist_ok=True)
    if not out["warm"]["cache_loaded"]:
        print("warning: the warm run found no compile cache to load (nothing was compiled?)", file=sys.stderr)
    figures = {"first_step_s_cold": out["cold"]["first_step_s"], "first_step_s_warm": out["warm"]["first_step_s"]}
    print(json.dumps(figures))
    if args.results:
        from worker_results import merge_results

        merge_results(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
