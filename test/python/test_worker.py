"""The worker against the real edge API (wrangler dev: local KV, D1, R2) and a prepared tiny-llama.

Starts `wrangler dev` on 127.0.0.1 with a temporary --persist-to and a JWT secret, publishes the
model's manifest through the admin route, queues jobs as users and runs `python -m loraxs.worker`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from loraxs.format import decode_adapter
from loraxs.api_client import ApiClient, ApiError, hs256_token
from loraxs.job_io import expectations

ROOT = Path(__file__).resolve().parents[2]
WRANGLER = ROOT / "node_modules" / "wrangler" / "bin" / "wrangler.js"
NODE = ROOT / "node_modules" / ".bin" / "node"  # the project's Node 24 (wrangler needs >= 22)
SECRET = "worker-test-secret-not-for-production"
MODEL = "tiny-llama"
READY_TIMEOUT_S = 60
TEXT = "The quick brown fox jumps over the lazy dog. " * 40

pytestmark = pytest.mark.skipif(not WRANGLER.is_file() or not NODE.exists(), reason="npm ci has not installed wrangler")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Ends a process group this test started (by its id), then reaps it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts"), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "loraxs.prepare", "--preset", MODEL, "--out", str(out / MODEL), "--skip-export",
                    "--no-reference"], check=True, cwd=ROOT, env=env, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="module")
def api(tmp_path_factory, models_dir):
    state = tmp_path_factory.mktemp("wrangler-state")
    env = {**os.environ, "CLOUDFLARE_CF_FETCH_ENABLED": "false", "WRANGLER_SEND_METRICS": "false", "FORCE_COLOR": "0"}
    subprocess.run([str(NODE), str(WRANGLER), "d1", "migrations", "apply", "loraxs-edge", "--local", "--persist-to", str(state)],
                   check=True, cwd=ROOT, env=env, capture_output=True, timeout=120)
    port = free_port()
    log = open(state / "wrangler.log", "w")
    proc = subprocess.Popen([str(NODE), str(WRANGLER), "dev", "--ip", "127.0.0.1", "--port", str(port), "--persist-to", str(state),
                             "--var", f"JWT_SECRET:{SECRET}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        probe = ApiClient(url, "none", retries=0, timeout=2)
        t0 = time.time()
        while True:
            try:
                probe.health()
                break
            except ApiError:
                if proc.poll() is not None or time.time() - t0 > READY_TIMEOUT_S:
                    raise RuntimeError(f"wrangler dev did not start: {(state / 'wrangler.log').read_text()[-2000:]}")
                time.sleep(0.5)
        manifest = json.loads((models_dir / MODEL / "manifest.json").read_text())
        ApiClient(url, hs256_token(SECRET, "root", "admin")).put_manifest(MODEL, manifest)
        yield url, manifest
    finally:
        stop(proc)
        log.close()


def user_client(url: str, user: str) -> ApiClient:
    return ApiClient(url, hs256_token(SECRET, user, "user"))


def admin(url: str) -> ApiClient:
    return ApiClient(url, hs256_token(SECRET, "root", "admin"))


def worker_cmd(url: str, models_dir: Path, *extra: str, name: str = "w1") -> list[str]:
    return [sys.executable, "-m", "loraxs.worker", "--api", url, "--token", hs256_token(SECRET, name, "worker"),
            "--models-dir", str(models_dir), "--device", "cpu", *extra]


def worker_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "scripts"), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run_worker_once(url: str, models_dir: Path, *extra: str) -> str:
    r = subprocess.run(worker_cmd(url, models_dir, "--once", *extra), cwd=ROOT, env=worker_env(), capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 120) -> list[str]:
    lines, t0 = [], time.time()
    while time.time() - t0 < timeout:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"worker never printed {needle!r}; output:\n{''.join(lines)}")


def test_once_trains_several_users_in_one_batch_and_fails_bad_data(api, models_dir):
    url, manifest = api
    jobs = {
        "alice": user_client(url, "alice").create_job(MODEL, "alice", {"kind": "text", "texts": [TEXT]}, {"steps": 6, "seq_len": 32}),
        "bob": user_client(url, "bob").create_job(MODEL, "bob", {"kind": "text", "texts": ["Lorem ipsum dolor sit amet. " * 30]},
                                                  {"steps": 4, "seq_len": 32, "seed": 7}),
        # passes the API's schema, but there is nothing to train on
        "carol": user_client(url, "carol").create_job(MODEL, "carol", {"kind": "text", "texts": ["   ", "\n"]}),
    }
    out = run_worker_once(url, models_dir, "--max-jobs", "8", "--log-json")
    assert "training 2 user(s) of tiny-llama together" in out, out
    rounds = [json.loads(line) for line in out.splitlines() if line.startswith('{"event":"round"')]
    assert len(rounds) == 1, out
    r = rounds[0]
    assert (r["jobs"], r["trained"], r["failed"]) == (3, 2, 1), r
    # alice 6 steps + bob 4 steps, 4 blocks of up to 32 tokens each; their texts fill every block
    assert 0.8 * 10 * 4 * 32 <= r["tokens"] <= 10 * 4 * 32, r
    assert r["seconds"]["compile"] == 0 and r["seconds"]["train"] > 0 and r["seconds"]["upload"] > 0, r
    assert sum(r["seconds"].values()) - r["seconds"]["poll"] <= r["total_s"] + 0.01, r
    for user in ("alice", "bob"):
        job = admin(url).get_job(jobs[user]["id"])
        assert job["status"] == "succeeded" and job["version"] == 1, job
        data, headers = user_client(url, user).get_adapter(MODEL, user)
        a = decode_adapter(data, expect=expectations(manifest))
        assert a.metadata["source"] == "worker"
        assert a.metadata["steps"] == str(jobs[user]["options"]["steps"])
        assert abs(a.R).max() > 1e-4  # trained, not the N(0, 1e-5) init
    carol = admin(url).get_job(jobs["carol"]["id"])
    assert carol["status"] == "failed"
    assert "data.texts are all empty" in carol["error"], carol


@contextmanager
def worker_training_one_job(url: str, models_dir: Path, user: str, steps: int, *extra: str, name: str):
    """Queues a job for `user`, starts a long-running worker (its own process group) and yields
    (job, proc) once the worker is training it; the worker is stopped on the way out, whatever the
    test did to it. For the tests that signal a worker in the middle of a job."""
    job = user_client(url, user).create_job(MODEL, user, {"kind": "text", "texts": [TEXT]}, {"steps": steps, "seq_len": 32})
    proc = subprocess.Popen(worker_cmd(url, models_dir, *extra, name=name), cwd=ROOT, env=worker_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_line(proc, "training 1 user(s)")
        yield job, proc
    finally:
        stop(proc)


def test_sigkilled_worker_leaves_the_job_to_be_reclaimed_after_the_lease(api, models_dir):
    url, manifest = api
    with worker_training_one_job(url, models_dir, "erin", 12, "--lease-seconds", "3", name="doomed") as (job, proc):
        os.killpg(proc.pid, signal.SIGKILL)  # no goodbye: no fail call, no more heartbeats
        proc.wait(timeout=10)
    j = admin(url).get_job(job["id"])
    assert j["status"] == "running" and j["attempts"] == 1, j
    time.sleep(3.5)  # the lease expires
    out = run_worker_once(url, models_dir, "--lease-seconds", "120")
    assert "claimed 1 job(s)" in out, out
    j = admin(url).get_job(job["id"])
    assert j["status"] == "succeeded" and j["attempts"] == 2 and j["version"] == 1, j
    data, _ = user_client(url, "erin").get_adapter(MODEL, "erin")
    assert decode_adapter(data, expect=expectations(manifest)).metadata["steps"] == "12"


def test_sigterm_releases_the_unfinished_job_for_another_worker(api, models_dir):
    url, _ = api
    with worker_training_one_job(url, models_dir, "frank", 100000, "--grace", "0.5", name="polite") as (job, proc):
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert "released" in out, out
    j = admin(url).get_job(job["id"])
    assert j["status"] == "queued" and j["attempts"] == 1 and "worker stopped" in j["error"], j
    # take it out of the queue so later runs are not slowed by a 100k-step job
    claimed = ApiClient(url, hs256_token(SECRET, "cleanup", "worker")).claim(models=[MODEL], max_jobs=4)
    for cj, lease in claimed:
        ApiClient(url, hs256_token(SECRET, "cleanup", "worker")).fail(cj["id"], lease, "test cleanup", retry=False)


def test_client_retries_transient_errors_with_growing_jittered_backoff_then_gives_up():
    """A real HTTP server on 127.0.0.1 answers 503 twice, then 200; 4xx is never retried."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = [503, 503, 200]
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            if self.path == "/v1/health":
                status = answers.pop(0) if answers else 200
                body = {"ok": True} if status == 200 else {"error": {"code": "busy", "message": "try later"}}
            else:
                status, body = 403, {"error": {"code": "auth.forbidden_user", "message": "not yours"}}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sleeps: list[float] = []
    try:
        c = ApiClient(f"http://127.0.0.1:{server.server_port}", "t", retries=4, backoff=0.5, sleep=sleeps.append, rng=lambda: 1.0)
        assert c.health() == {"ok": True}
        assert sleeps == [0.5, 1.0]  # 0.5 · 2^n, jitter factor pinned to 1
        with pytest.raises(ApiError) as e:
            c.get_job("00000000-0000-0000-0000-000000000000")
        assert (e.value.status, e.value.code) == (403, "auth.forbidden_user") and len(sleeps) == 2
    finally:
        server.shutdown()
        server.server_close()
    port = server.server_port  # now closed: connection refused, retried, then a named error
    sleeps.clear()
    c = ApiClient(f"http://127.0.0.1:{port}", "t", retries=2, sleep=sleeps.append, rng=lambda: 0.5)
    with pytest.raises(ApiError) as e:
        c.health()
    assert e.value.code == "connection_failed" and sleeps == [0.25, 0.5]


def test_hs256_token_rejects_unknown_roles():
    with pytest.raises(ValueError, match="role 'root' is not one of user, worker, admin"):
        hs256_token(SECRET, "x", "root")
