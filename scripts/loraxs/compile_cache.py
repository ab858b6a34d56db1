"""A warm start for compiled training: torch.compile's artifacts saved once, loaded by the next worker.

A fresh GPU machine spends minutes compiling the decoder layers before its first step. After a
round that compiled, the worker saves `torch.compiler.save_cache_artifacts()` (inductor's
kernels, AOTAutograd's graphs) to one file; a worker that starts later loads it with
`load_cache_artifacts()` before its first claim, so its first step only re-traces.

The file is keyed by everything that makes compiled code invalid: the model id and its factor
digest, the frozen base's dtype, the shape policy (fast_path.SHAPE_POLICY: rows dynamic, so one
entry serves rounds of any number of users and rows; the artifacts of every sequence length the
worker compiled go in the same file), the compile options, the torch version and the device (GPU
name). A file for another key is never loaded; its sidecar `.json` says which fields
differ, so the log tells why the start is cold. A file torch cannot read is reported and skipped.

    <dir>/<model>-<key12>.bin    the artifacts (bytes from save_cache_artifacts)
    <dir>/<model>-<key12>.json   the key's fields, the artifact counts, when it was written
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .fast_path import SHAPE_POLICY


def device_name(device: str) -> str:
    """The GPU's name (kernels are tuned per GPU), or `cpu`."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return "cpu"


def cache_key(manifest: dict, device: str, base_dtype: str, options: dict, shapes: str = SHAPE_POLICY) -> dict:
    """The fields a compiled artifact depends on (a change in any one means a cold compile). The
    batch is not one of them: the compiled graphs take any number of rows (`shapes`)."""
    return {
        "model": manifest["id"],
        "factors": manifest["factors"]["sha256"],
        "base_dtype": base_dtype,
        "shapes": shapes,
        "compile_options": repr(sorted(options.items())),
        "torch": torch.__version__,
        "device": device_name(device),
    }


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


class CompileCache:
    def __init__(self, folder: Path, key: dict, log: Callable[[str], None]):
        self.folder, self.key, self.log = Path(folder), key, log
        stem = f"{key['model']}-{_digest(key)}"
        self.path, self.meta = self.folder / f"{stem}.bin", self.folder / f"{stem}.json"
        self.loaded = False

    def load(self) -> bool:
        """Loads this key's artifacts; False (with the reason logged) means the compile will be cold."""
        if not self.path.is_file():
            self.log(f"compile cache: no entry for {self.key['model']} in {self.folder}{self._why_not()}; "
                     "compiling cold (the first steps take minutes on a GPU)")
            return False
        t0 = time.monotonic()
        try:
            info = torch.compiler.load_cache_artifacts(self.path.read_bytes())
        except Exception as e:  # noqa: BLE001 - any unreadable file means the same: compile cold
            info, error = None, f"{type(e).__name__}: {e}"
        else:
            error = "torch could not read it"
        if info is None:
            self.log(f"compile cache: {self.path} is unreadable ({error}); ignoring it, compiling cold")
            return False
        counts = {k: len(v) for k, v in info.artifacts.items()}
        self.loaded = True
        self.log(f"compile cache: loaded {self.path.stat().st_size:,} bytes ({_counts(counts)}) from {self.path} "
                 f"in {time.monotonic() - t0:.2f}s")
        return True

    def save(self) -> bool:
        """Writes every artifact this process compiled or loaded; False when there is nothing to write."""
        got = torch.compiler.save_cache_artifacts()
        if got is None:
            self.log("compile cache: nothing to save (no compiled artifacts)")
            return False
        data, info = got
        counts = {k: len(v) for k, v in info.artifacts.items()}
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(self.path)  # a reader never sees half a file
        self.meta.write_text(json.dumps({"key": self.key, "artifacts": counts, "bytes": len(data),
                                         "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1))
        self.log(f"compile cache: saved {len(data):,} bytes ({_counts(counts)}) to {self.path}")
        return True

    def _why_not(self) -> str:
        """Which key fields differ from the entries that are there for this model (stale entries)."""
        diffs = []
        for meta in sorted(self.folder.glob(f"{self.key['model']}-*.json")):
            try:
                other = json.loads(meta.read_text())["key"]
            except (OSError, ValueError, KeyError):
                continue
            changed = [f"{k} {other.get(k)!r} -> {v!r}" for k, v in self.key.items() if other.get(k) != v]
            if changed:
                diffs.append(f"{meta.stem}: {', '.join(changed)}")
        return f" (stale: {'; '.join(diffs)})" if diffs else ""


def _counts(counts: dict) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "empty"
