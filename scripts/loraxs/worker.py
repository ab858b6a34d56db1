"""The training worker: claims jobs from the edge API, trains many users at once, uploads adapters.

    python -m loraxs.worker --api http://127.0.0.1:8787 --token $WORKER_JWT [--once] [--device cuda]
    npm run worker -- --api http://127.0.0.1:8787 --token $WORKER_JWT --models-dir models

One round: claim up to --max-jobs jobs with a lease (POST /v1/jobs/claim) for the models found
under --models-dir (a claim that returns fewer tops up after --gather seconds, so jobs posted
together train together), keep every lease alive from a heartbeat thread, download each job's
data (GET /v1/jobs/:id/data, several at once), fail jobs whose data cannot be trained on
(POST /v1/jobs/:id/fail, the reason names the offending value), train the users of jobs that
share a model (and sequence length) in one multi-user run, and complete each job with its
adapter bytes (POST /v1/jobs/:id/complete, several at once). Each round ends with one line:
jobs, tokens, and the seconds spent polling, claiming, downloading, compiling, training and
uploading (loraxs.round_log; --log-json prints it as one JSON object).

Compiled training (CUDA) saves torch.compile's artifacts after a round that compiled and loads
them at start (loraxs.compile_cache; --compile-cache DIR, default <models-dir>/<model>/compile-cache),
so a fresh machine does not compile again. The compiled graphs take any number of rows
(fast_path.SHAPE_POLICY): a round of 1 user runs on what a round of 32 compiled.

SIGTERM (or SIGINT): stop claiming; the batch in progress may finish within --grace seconds,
else its jobs are failed with retry=true so that another worker re-claims them. A second
signal releases at once. A worker that dies without a word (SIGKILL) loses nothing either:
its leases expire and the jobs are claimed again.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .api_client import ApiClient, ApiError
from .data import DataError, job_defaults, parse_job_data, parse_options
from .round_log import Round, emit

DEFAULT_LEASE_S = 300  # the API's default lease
MAX_JOBS = 32  # jobs per claim round (the API's most): their users train together, 32 × 4 × 256 tokens a step keeps a GPU busy
GRACE_S = 60.0  # after SIGTERM: time the batch in progress may still take
POLL_S = 1.0  # between claims on an empty queue: one small D1 query a second, and a job waits 0.5 s on average
GATHER_S = 0.5  # after a claim that got fewer than --max-jobs: wait this long and top up once per new arrival
IO_THREADS = 8  # job data downloads and adapter uploads in flight at once (each a small HTTP request)
COMPILE_MODES = {"auto": None, "on": True, "off": False}  # auto: compile on CUDA only (TrainConfig.compile)


def log(msg: str) -> None:
    print(f"[worker {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Lease:
    job: dict
    lease_id: str
    lost: bool = False  # the heartbeat found someone else holds the job now
    done: bool = False  # completed or failed: no longer ours to report on
    failed: bool = False  # we sent `fail` (bad data, or released for another attempt)

    @property
    def id(self) -> str:
        return self.job["id"]


class Heartbeats(threading.Thread):
    """Extends every live lease every `interval` seconds from its own connection."""

    def __init__(self, client: ApiClient, leases: list[Lease], lease_seconds: int, interval: float):
        super().__init__(daemon=True, name="heartbeats")
        self.client, self.leases, self.lease_seconds, self.interval = client, leases, lease_seconds, interval
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            for lease in list(self.leases):
                if lease.done or lease.lost:
                    continue
                try:
                    self.client.heartbeat(lease.id, lease.lease_id, self.lease_seconds)
                except ApiError as e:
                    if e.status in (404, 409):
                        lease.lost = True
                        log(f"job {lease.id}: lease lost ({e.code}); its result will not be uploaded")
                    else:
                        log(f"job {lease.id}: heartbeat failed: {e}")

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)


@dataclass
class Worker:
    client: ApiClient
    models_dir: Path
    device: str = "cpu"
    max_jobs: int = MAX_JOBS
    lease_seconds: int = DEFAULT_LEASE_S
    grace: float = GRACE_S
    poll: float = POLL_S
    gather: float = GATHER_S
    val_frac: float = 0.1
    base_dtype: str = "auto"  # frozen base storage: auto = bf16 on CUDA (fast_path.base_dtype)
    models: list[str] | None = None
    compile: str = "auto"  # COMPILE_MODES
    compile_cache: Path | None = None  # None: <models_dir>/<model>/compile-cache
    use_compile_cache: bool = True
    log_json: bool = False  # round lines as JSON objects
    stopping: threading.Event = field(default_factory=threading.Event)
    deadline: float = float("inf")
    _loaded: dict = field(default_factory=dict)
    _caches: dict = field(default_factory=dict)
    _rounds: int = 0

    @property
    def compiling(self) -> bool:
        on = COMPILE_MODES[self.compile]
        return on is True or (on is None and self.device == "cuda")

    # -- signals -------------------------------------------------------------------------------
    def install_signals(self) -> None:
        def on_signal(signum, _frame):
            if self.stopping.is_set():
                log(f"{signal.Signals(signum).name} again: releasing jobs now")
                self.deadline = time.monotonic()
            else:
                log(f"{signal.Signals(signum).name}: no more claims; {self.grace:.0f}s to finish the batch in progress")
                self.deadline = time.monotonic() + self.grace
                self.stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    # -- models --------------------------------------------------------------------------------
    def available_models(self) -> list[str]:
        if self.models is not None:
            return self.models
        return sorted(p.parent.name for p in self.models_dir.glob("*/manifest.json") if (p.parent / "factors.safetensors").is_file())

    def load(self, model: str):
        if model not in self._loaded:
            from .models import load_prepared
            from .train import _fast_attention

            folder = self.models_dir / model
            if not (folder / "manifest.json").is_file():
                raise FileNotFoundError(f"model {model!r} has no prepared folder at {folder}")
            from .fast_path import base_dtype, store_frozen_base

            base, factors, source, manifest = load_prepared(folder)
            store_frozen_base(base.model, base_dtype(self.base_dtype, self.device))
            base.model.to(self.device)
            if self.device == "cuda":
                _fast_attention(base.model)
            self._loaded[model] = (base, source, manifest)
            log(f"loaded {model} ({manifest['family']}, {len(manifest['modules'])} modules, rank {manifest['rank']}) on {self.device}")
            if self.compiling and self.use_compile_cache:
                from .compile_cache import CompileCache, cache_key
                from .fast_path import COMPILE_OPTIONS

                key = cache_key(manifest, self.device, self.base_dtype, COMPILE_OPTIONS)
                cache = CompileCache(self.compile_cache or folder / "compile-cache", key, log)
                cache.load()
                self._caches[model] = cache
        return self._loaded[model]

    # -- the loop ------------------------------------------------------------------------------
    def run(self, once: bool = False) -> int:
        models = self.available_models()
        if not models:
            log(f"no prepared models under {self.models_dir}; nothing to claim")
            return 1
        log(f"serving models {', '.join(models)} on {self.device}")
        for model in models:  # load before the first claim: a lease's clock should not run during loading
            self.load(model)
        log(f"waiting for jobs (poll {self.poll:g}s, gather {self.gather:g}s, up to {self.max_jobs} per round)")
        idle_since = time.monotonic()
        while not self.stopping.is_set():
            polled = time.monotonic() - idle_since
            round_ = Round(self._rounds + 1)
            with round_.phase("claim"):
                claimed = self.claim(models)
            if claimed:
                self._rounds += 1
                round_.seconds["poll"] = polled
                self.process([Lease(job, lease_id) for job, lease_id in claimed], round_)
                emit(round_, log, self.log_json)
                idle_since = time.monotonic()
            if once:
                break
            if not claimed:
                self.stopping.wait(self.poll)
        log("stopped")
        return 0

    def claim(self, models: list[str]) -> list[tuple[dict, str]]:
        """Claims up to max_jobs; a partial claim tops up while jobs keep arriving (a burst of
        posts is not split over rounds by the order its requests land)."""
        claimed = self.client.claim(models=models, max_jobs=self.max_jobs, lease_seconds=self.lease_seconds)
        while claimed and len(claimed) < self.max_jobs and self.gather > 0 and not self.stopping.wait(self.gather):
            more = self.client.claim(models=models, max_jobs=self.max_jobs - len(claimed), lease_seconds=self.lease_seconds)
            if not more:
                break
            claimed += more
        return claimed

    def parallel(self, fn, items: list) -> list:
        """fn(client, item) for every item, IO_THREADS at a time, each thread on its own connection."""
        local = threading.local()

        def call(item):
            if not hasattr(local, "client"):
                local.client = self.client.clone()
            return fn(local.client, item)

        if len(items) <= 1:
            return [fn(self.client, item) for item in items]
        with ThreadPoolExecutor(min(IO_THREADS, len(items))) as pool:
            return list(pool.map(call, items))

    def process(self, leases: list[Lease], round_: Round | None = None) -> None:
        round_ = round_ or Round(0)
        round_.jobs = len(leases)
        log(f"claimed {len(leases)} job(s): {', '.join(l.job['model'] + '/' + l.job['user'] for l in leases)}")
        beats = Heartbeats(self.client.clone(), leases, self.lease_seconds, max(0.5, self.lease_seconds / 3))
        beats.start()
        try:
            groups: dict[tuple, list[tuple[Lease, object]]] = {}
            with round_.phase("data"):
                tasks = self.parallel(self.prepare_task, leases)
            for lease, task in zip(leases, tasks):
                if task is not None:
                    groups.setdefault((lease.job["model"], task.train.ids.shape[1]), []).append((lease, task))
            for (model, _), items in groups.items():
                if self.out_of_time():
                    break
                try:
                    self.train_group(model, items, round_)
                except Exception as e:  # a bug or an out-of-memory: release these jobs, keep serving
                    log(f"{model}: training failed: {type(e).__name__}: {e}")
                    for lease, _ in items:
                        if not (lease.done or lease.lost):
                            self.release(lease, f"worker error {type(e).__name__}: {e}"[:500], retry=True)
        finally:
            beats.stop()
            # Whatever was not finished goes back to the queue for another attempt.
            with round_.phase("upload"):
                for lease in leases:
                    if not (lease.done or lease.lost):
                        reason = "worker stopped before finishing; released for another attempt" if self.stopping.is_set() \
                            else "worker could not finish this job; released for another attempt"
                        self.release(lease, reason, retry=True)
            round_.failed = sum(1 for lease in leases if lease.failed)

    def prepare_task(self, client: ApiClient, lease: Lease):
        """Downloads and checks one job's data; a job with bad data is failed (no retry) here."""
        from .job_io import make_task

        job = lease.job
        try:
            base, _, manifest = self.load(job["model"])
        except (FileNotFoundError, ValueError) as e:
            self.release(lease, f"model {job['model']!r} is not available on this worker: {e}", retry=True, client=client)
            return None
        try:
            data = client.job_data(lease.id, lease.lease_id)
        except ApiError as e:
            if e.status in (404, 409):  # data gone or lease lost: nothing we can do with it
                lease.lost = e.status == 409
                if e.status == 404:
                    self.release(lease, f"training data unavailable: {e.message}", retry=False, client=client)
                log(f"job {lease.id}: {e}")
                return None
            raise
        try:
            opts = parse_options(job.get("options") or {}, job_defaults(manifest["family"]))
            task = make_task(job["user"], parse_job_data(data, manifest["family"]), opts, base.tokenizer,
                             self.val_frac)
        except DataError as e:
            self.release(lease, f"bad training data: {e}", retry=False, client=client)
            return None
        return task

    def train_group(self, model: str, items: list, round_: Round) -> None:
        from .job_io import created_now, encode_result
        from .train import MultiUserTrainer, TrainConfig

        base, source, manifest = self.load(model)
        tasks = [t for _, t in items]
        cfg = TrainConfig(device=self.device, val_frac=self.val_frac, progress=sys.stderr.isatty(),
                          compile=COMPILE_MODES[self.compile])
        log(f"training {len(tasks)} user(s) of {model} together: {', '.join(t.user for t in tasks)} "
            f"(steps {max(t.steps for t in tasks)}, seq_len {tasks[0].train.ids.shape[1]})")
        cache = self._caches.get(model)
        if self.compiling:
            log(f"{model}: compiled layers; " + ("artifacts loaded from the compile cache: tracing only" if cache and cache.loaded
                                                  else "a cold start or a new sequence length compiles first (minutes on a GPU)"))
        compiled_before = round_.seconds["compile"]
        t0 = time.time()
        trainer = MultiUserTrainer(base.model, source, manifest["family"], tasks, cfg)
        try:
            with round_.training():
                results = trainer.train(should_stop=self.out_of_time)
        except InterruptedError as e:
            log(f"{model}: {e}")
            return  # process() releases the leases
        finally:
            round_.tokens += trainer.tokens_trained
        compiled = round_.seconds["compile"] - compiled_before
        log(f"{model}: trained {len(tasks)} user(s) in {time.time() - t0:.1f}s"
            + (f", {compiled:.1f}s of it compiling" if self.compiling else ""))
        if cache is not None and compiled > 0:
            cache.save()
        created = created_now()
        todo = [(lease, encode_result(result, manifest, source="worker", created=created), result)
                for (lease, _), result in zip(items, results) if not lease.lost]
        with round_.phase("upload"):
            self.parallel(lambda client, item: self.upload(client, model, *item), todo)
        round_.trained += sum(1 for lease, _, _ in todo if lease.done)

    def upload(self, client: ApiClient, model: str, lease: Lease, data: bytes, result) -> None:
        try:
            answer = client.complete(lease.id, lease.lease_id, data)
            lease.done = True
            log(f"job {lease.id} ({model}/{lease.job['user']}): version {answer['version']}, {len(data)} bytes, "
                f"{result.steps} steps" + (f", held-out loss {result.val_loss:.4f}" if result.val_loss is not None else ""))
        except ApiError as e:
            if e.status == 409:
                lease.lost = True
            log(f"job {lease.id}: complete failed: {e}")

    def release(self, lease: Lease, reason: str, retry: bool, client: ApiClient | None = None) -> None:
        try:
            (client or self.client).fail(lease.id, lease.lease_id, reason, retry=retry)
            lease.failed = True
            log(f"job {lease.id}: {'released' if retry else 'failed'}: {reason}")
        except ApiError as e:
            log(f"job {lease.id}: fail call refused: {e}")
        lease.done = True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loraxs.worker", description=__doc__.split("\n\n")[0])
    p.add_argument("--api", required=True, help="edge API base URL, e.g. http://127.0.0.1:8787")
    p.add_argument("--token", default=os.environ.get("LORAXS_WORKER_TOKEN"), help="worker JWT (or LORAXS_WORKER_TOKEN)")
    p.add_argument("--once", action="store_true", help="one claim round, then exit")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--models-dir", default="models", help="holds <model>/manifest.json + factors.safetensors")
    p.add_argument("--models", default=None, help="comma-separated model ids to serve (default: all prepared)")
    p.add_argument("--max-jobs", type=int, default=MAX_JOBS)
    p.add_argument("--lease-seconds", type=int, default=DEFAULT_LEASE_S)
    p.add_argument("--grace", type=float, default=GRACE_S, help="seconds to finish the batch after SIGTERM")
    p.add_argument("--poll", type=float, default=POLL_S, help="seconds between claims when the queue is empty")
    p.add_argument("--gather", type=float, default=GATHER_S,
                   help="seconds to wait for more jobs after a claim that got fewer than --max-jobs (0 = never)")
    p.add_argument("--compile", default="auto", choices=list(COMPILE_MODES),
                   help="torch.compile the decoder layers (auto: on CUDA only)")
    p.add_argument("--compile-cache", default=None,
                   help="folder of saved compile artifacts (default: <models-dir>/<model>/compile-cache)")
    p.add_argument("--no-compile-cache", action="store_true", help="neither load nor save compile artifacts")
    p.add_argument("--log-json", action="store_true", help="print each round's line as one JSON object")
    p.add_argument("--val-frac", type=float, default=0.1, help="held-out fraction per user for early stopping")
    p.add_argument("--base-dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="storage of the frozen base model (auto: bf16 on CUDA, fp32 on CPU)")
    args = p.parse_args(argv)
    if not args.token:
        p.error("--token (or LORAXS_WORKER_TOKEN) is required")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible")
    client = ApiClient(args.api, args.token, log=log)
    worker = Worker(client, Path(args.models_dir), device=args.device, max_jobs=args.max_jobs,
                    lease_seconds=args.lease_seconds, grace=args.grace, poll=args.poll, val_frac=args.val_frac,
                    base_dtype=args.base_dtype, gather=args.gather, compile=args.compile,
                    compile_cache=Path(args.compile_cache) if args.compile_cache else None,
                    use_compile_cache=not args.no_compile_cache, log_json=args.log_json,
                    models=args.models.split(",") if args.models else None)
    worker.install_signals()
    torch.manual_seed(0)
    return worker.run(once=args.once)


if __name__ == "__main__":
    sys.exit(main())
