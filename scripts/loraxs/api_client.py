"""HTTP client for the edge API (v1): jobs, adapters, manifests, with retries on transient errors.

Transient failures (connection errors, timeouts, 5xx, 429) are retried with exponential backoff
and full jitter; anything else raises ApiError carrying the API's error code and message.
Every call the worker makes is safe to repeat: `complete` is idempotent for the same lease and
bytes, and a repeated `claim` at worst holds a lease that expires on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from typing import Any

import requests

RETRY_STATUSES = (429, 500, 502, 503, 504)
DEFAULT_RETRIES = 6  # 0.5 + 1 + 2 + 4 + 8 + 16 s at most: rides out a worker restart
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
DEFAULT_TIMEOUT_S = 60.0  # an adapter upload is KBs; a slow answer means a stuck connection


class ApiError(Exception):
    """A non-transient answer (or a transient one after all retries): status, code and message."""

    def __init__(self, status: int, code: str, message: str, method: str = "", path: str = ""):
        super().__init__(f"{method} {path} -> {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class ApiClient:
    def __init__(self, base_url: str, token: str, *, retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF_S,
                 timeout: float = DEFAULT_TIMEOUT_S, sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random, log: Callable[[str], None] | None = None):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"API URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self.sleep, self.rng, self.log = sleep, rng, log
        self.session = requests.Session()

    def clone(self) -> ApiClient:
        """A client with its own connection pool (requests.Session is not for sharing across threads)."""
        return ApiClient(self.base_url, self.token, retries=self.retries, backoff=self.backoff, timeout=self.timeout,
                         sleep=self.sleep, rng=self.rng, log=self.log)

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After (seconds) is a floor."""
        d = min(MAX_BACKOFF_S, self.backoff * 2**attempt) * self.rng()
        if retry_after:
            try:
                d = max(d, min(MAX_BACKOFF_S, float(retry_after)))
            except ValueError:
                pass
        return d

    def request(self, method: str, path: str, *, json_body: Any = None, data: bytes | None = None,
                headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200, 201)) -> requests.Response:
        h = {"authorization": f"Bearer {self.token}", **(headers or {})}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            h["content-type"] = "application/json"
        url = self.base_url + path
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                r = self.session.request(method, url, data=data, headers=h, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as e:
                if last:
                    raise ApiError(0, "connection_failed", f"{type(e).__name__}: {e}", method, path) from e
                wait = self.delay(attempt)
                self._note(f"{method} {path}: {type(e).__name__}; retry {attempt + 1}/{self.retries} in {wait:.2f}s")
                self.sleep(wait)
                continue
            if r.status_code in ok:
                return r
            if r.status_code in RETRY_STATUSES and not last:
                wait = self.delay(attempt, r.headers.get("retry-after"))
                self._note(f"{method} {path}: {r.status_code}; retry {attempt + 1}/{self.retries} in {wait:.2f}s")
                self.sleep(wait)
                continue
            code, message = _error_of(r)
            raise ApiError(r.status_code, code, message, method, path)
        raise AssertionError("unreachable")

    def _note(self, line: str) -> None:
        if self.log:
            self.log(line)

    # -- routes ----------------------------------------------------------------------------------
    def health(self) -> dict:
        return self.request("GET", "/v1/health").json()

    def claim(self, models: list[str] | None = None, max_jobs: int = 1, lease_seconds: int | None = None) -> list[tuple[dict, str]]:
        body: dict[str, Any] = {"max": max_jobs}
        if models is not None:
            body["models"] = models
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        jobs = self.request("POST", "/v1/jobs/claim", json_body=body).json()["jobs"]
        return [(j["job"], j["lease_id"]) for j in jobs]

    def heartbeat(self, job_id: str, lease_id: str, lease_seconds: int | None = None) -> dict:
        body: dict[str, Any] = {"lease_id": lease_id}
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        return self.request("POST", f"/v1/jobs/{job_id}/heartbeat", json_body=body).json()["job"]

    def job_data(self, job_id: str, lease_id: str) -> Any:
        return self.request("GET", f"/v1/jobs/{job_id}/data", headers={"x-lease-id": lease_id}).json()

    def complete(self, job_id: str, lease_id: str, adapter: bytes) -> dict:
        headers = {"x-lease-id": lease_id, "content-type": "application/octet-stream"}
        return self.request("POST", f"/v1/jobs/{job_id}/complete", data=adapter, headers=headers).json()

    def fail(self, job_id: str, lease_id: str, reason: str, retry: bool = False) -> dict:
        body = {"lease_id": lease_id, "reason": reason[:2000], "retry": retry}
        return self.request("POST", f"/v1/jobs/{job_id}/fail", json_body=body).json()["job"]

    def get_job(self, job_id: str) -> dict:
        return self.request("GET", f"/v1/jobs/{job_id}").json()["job"]

    def create_job(self, model: str, user: str, data: Any, options: dict | None = None) -> dict:
        body: dict[str, Any] = {"data": data}
        if options:
            body["options"] = options
        return self.request("POST", f"/v1/models/{model}/users/{user}/jobs", json_body=body).json()["job"]

    def put_manifest(self, model: str, manifest: dict) -> dict:
        return self.request("PUT", f"/v1/models/{model}/manifest", json_body=manifest).json()

    def get_adapter(self, model: str, user: str) -> tuple[bytes, dict[str, str]]:
        r = self.request("GET", f"/v1/models/{model}/users/{user}/adapter")
        return r.content, dict(r.headers)


def _error_of(r: requests.Response) -> tuple[str, str]:
    try:
        err = r.json()["error"]
        return str(err.get("code", "unknown")), str(err.get("message", ""))
    except Exception:
        return "http_error", r.text[:300]


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hs256_token(secret: str, sub: str, role: str, audience: str = "loraxs-edge", ttl_seconds: int = 3600,
                now: float | None = None) -> str:
    """An HS256 JWT as the API expects (sub, role, aud, iat, exp): for local runs and tests."""
    if role not in ("user", "worker", "admin"):
        raise ValueError(f"role {role!r} is not one of user, worker, admin")
    t = int(now if now is not None else time.time())
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps({"sub": sub, "role": role, "aud": audience, "iat": t, "exp": t + ttl_seconds},
                                 separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(sig)}"
