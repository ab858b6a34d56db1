"""Shared pytest set-up: `scripts/` on sys.path (so `import loraxs` works without PYTHONPATH)
and the repository root as a fixture."""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """tiny-llama prepared without export (factors, tokenizer, manifest): the quality benchmarks' smoke runs."""
    from loraxs import prepare

    out = tmp_path_factory.mktemp("tiny-llama")
    prepare.prepare(prepare.parse_args(["--preset", "tiny-llama", "--out", str(out), "--device", "cpu",
                                        "--skip-export", "--no-reference"]))
    return out
