"""The adapter file on the Python side: the shared test vectors (same verdicts and codes as the
TypeScript reader), bit-exact interop with safetensors, stable writer output, round trips."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors import safe_open

from loraxs.format import (
    ADAPTER_ERROR_CODES,
    AdapterExpectations,
    AdapterFormatError,
    decode_adapter,
    encode_adapter,
    load_adapter,
    save_adapter,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "adapters"
CASES = json.loads((FIXTURES / "expected.json").read_text())["cases"]
VALID = [c for c in CASES if c["verdict"] == "valid"]


def data_of(case: dict) -> bytes:
    if "file" in case:
        return (FIXTURES / case["file"]).read_bytes()
    return bytes(case["synthetic"]["zeros"])


def f32(bits: list[int]) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def kwargs_of(inp: dict) -> dict:
    head = inp["head"]
    return {
        "model": inp["model"],
        "factors": inp["factors"],
        "rank": inp["rank"],
        "modules": inp["modules"],
        "R": f32(inp["R_bits"]),
        "head": None
        if head is None
        else {
            "weight": f32(head["weight_bits"]),
            "bias": f32(head["bias_bits"]),
            "classes": head["classes"],
            "hidden": head["hidden"],
            "labels": head["labels"],
        },
        "metadata": inp["metadata"],
        "dtype": inp["dtype"],
    }


def test_fixtures_cover_every_reader_code():
    covered = {c.get("code") for c in CASES}
    missing = [c for c in ADAPTER_ERROR_CODES if c != "value_out_of_range" and c not in covered]
    assert missing == []
    assert any(c["writer"] == "py" for c in VALID) and any(c["writer"] == "ts" for c in VALID)


def test_codes_match_the_typescript_list(repo_root):
    text = (repo_root / "src" / "format" / "errors.ts").read_text()
    block = text.split("ADAPTER_ERROR_CODES = [", 1)[1].split("] as const", 1)[0]
    ts_codes = [line.strip().strip('",') for line in block.splitlines() if line.strip().startswith('"')]
    assert tuple(ts_codes) == ADAPTER_ERROR_CODES


def test_format_package_mirrors_src_format(repo_root):
    """loraxs.format imports nothing of loraxs outside itself (as src/format/ imports nothing), and
    each of its reader and writer modules has its TypeScript counterpart."""
    import ast

    folder = repo_root / "scripts" / "loraxs" / "format"
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1) and not (node.module or "").startswith("loraxs"), path.name
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("loraxs") for a in node.names), path.name
    renamed = {"adapter_types": "types", "strict_json": "json"}  # not to shadow the standard library
    for path in folder.glob("*.py"):
        if path.stem != "__init__":
            ts = renamed.get(path.stem, path.stem).replace("_", "-") + ".ts"
            assert (repo_root / "src" / "format" / ts).is_file(), f"{path.name} has no src/format/{ts}"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_fixture_verdict(case):
    data = data_of(case)
    if case["verdict"] == "invalid":
        with pytest.raises(AdapterFormatError) as e:
            decode_adapter(data, case["expect"])
        assert e.value.code == case["code"], str(e.value)
        return
    a = decode_adapter(data, case["expect"])
    d = case["decoded"]
    assert (a.model, a.factors, a.rank, a.modules, a.dtype) == (
        d["model"],
        d["factors"],
        d["rank"],
        d["modules"],
        d["dtype"],
    )
    assert a.bytes == len(data)
    assert a.R.shape == (d["modules"], d["rank"], d["rank"]) and a.R.dtype == np.float32
    assert a.R.reshape(-1).view(np.uint32).tolist() == case["bits"]["R"]
    digest = hashlib.sha256(a.R.astype("<f4").tobytes())
    if d["classes"] is None:
        assert a.head is None
    else:
        assert (a.head.classes, a.head.hidden, a.head.labels) == (d["classes"], d["hidden"], d["labels"])
        assert a.head.weight.reshape(-1).view(np.uint32).tolist() == case["bits"]["head.weight"]
        assert a.head.bias.view(np.uint32).tolist() == case["bits"]["head.bias"]
        digest.update(a.head.bias.astype("<f4").tobytes())
        digest.update(a.head.weight.astype("<f4").tobytes())
    assert digest.hexdigest() == case["sha256_f32"]


@pytest.mark.parametrize(
    "case", [c for c in VALID if c["canonical"]], ids=[c["name"] for c in VALID if c["canonical"]]
)
def test_writer_reproduces_every_canonical_fixture(case):
    """Python-written files are stable, and TypeScript-written ones come out identical."""
    assert encode_adapter(**kwargs_of(case["input"])) == data_of(case)


@pytest.mark.parametrize("case", VALID, ids=[c["name"] for c in VALID])
def test_safetensors_reads_every_valid_fixture_bit_exactly(case, tmp_path):
    path = tmp_path / "a.safetensors"
    path.write_bytes(data_of(case))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert meta["format"] == "loraxs" and meta["model"] == case["decoded"]["model"]
        for name, bits in case["bits"].items():
            t = f.get_tensor(name)
            assert str(t.dtype) == {"F16": "torch.float16", "F32": "torch.float32", "BF16": "torch.bfloat16"}[
                case["decoded"]["dtype"]
            ]
            assert t.float().reshape(-1).numpy().view(np.uint32).tolist() == bits


def test_python_writer_output_is_stable_across_processes(tmp_path, repo_root):
    """safetensors.save orders metadata by a per-process hash; the written header must not."""
    case = next(c for c in VALID if c["name"] == "py-f16")
    script = (
        "import json,sys; import numpy as np; from loraxs.format import encode_adapter;"
        "k=json.load(sys.stdin); k['R']=np.asarray(k['R'],dtype=np.uint32).view(np.float32);"
        "sys.stdout.buffer.write(encode_adapter(**k))"
    )
    k = kwargs_of(case["input"])
    k["R"] = case["input"]["R_bits"]
    outs = {
        subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(k).encode(),
            capture_output=True,
            check=True,
            env={"PYTHONPATH": str(repo_root / "scripts")},
        ).stdout
        for _ in range(3)
    }
    assert outs == {data_of(case)}


def test_round_trip_torch_and_numpy_inputs(tmp_path):
    g = torch.Generator().manual_seed(0)
    R = torch.randn(3, 4, 4, generator=g) * 0.01
    head = {"weight": torch.randn(2, 5, generator=g), "bias": np.zeros(2), "classes": 2, "hidden": 5, "labels": ["no", "yes"]}
    factors = "sha256:" + "1" * 64
    for dtype, store in (("F16", np.float16), ("BF16", ml_dtypes.bfloat16), ("F32", np.float32)):
        path = tmp_path / f"{dtype}.safetensors"
        data = save_adapter(path, model="m-1", factors=factors, rank=4, modules=3, R=R, head=head, dtype=dtype,
                            metadata={"source": "worker", "steps": "12", "created": "2026-11-28T17:00:00Z"})
        a = load_adapter(path, AdapterExpectations(model="m-1", factors=factors, rank=4, modules=3, hidden=5))
        assert a.bytes == len(data) and a.dtype == dtype
        np.testing.assert_array_equal(a.R, R.numpy().astype(store).astype(np.float32))
        np.testing.assert_array_equal(a.head.weight, head["weight"].numpy().astype(store).astype(np.float32))
        assert a.head.labels == ["no", "yes"]
        assert a.metadata["steps"] == "12" and a.metadata["source"] == "worker"
        # re-encoding what was read gives the same file
        again = encode_adapter(model="m-1", factors=factors, rank=4, modules=3, R=a.R, dtype=dtype,
                               head={**vars(a.head)}, metadata={k: a.metadata[k] for k in ("source", "steps", "created")})
        assert again == data


@pytest.mark.parametrize(
    ("change", "code", "part"),
    [
        ({"model": "Tiny"}, "model_invalid", '"Tiny"'),
        ({"factors": "sha256:xyz"}, "factors_invalid", "sha256:xyz"),
        ({"rank": 0}, "rank_invalid", '"0"'),
        ({"rank": True}, "rank_invalid", "true"),
        ({"modules": 3000}, "modules_invalid", "2048"),
        ({"R": np.zeros(5)}, "shape_mismatch", "[5]"),
        ({"R": np.array([0, np.nan, 0, 0])}, "value_not_finite", "R[1]"),
        ({"R": np.array([0, 0, 0, 7e4])}, "value_out_of_range", "70000"),
        ({"dtype": "F64"}, "dtype_unsupported", "F64"),
        ({"metadata": {"alpha": "1"}}, "metadata_key_unknown", "alpha"),
        ({"metadata": {"steps": "-1"}}, "metadata_value_invalid", '"-1"'),
    ],
)
def test_writer_refuses_bad_input(change, code, part):
    base = {"model": "m", "factors": "sha256:" + "a" * 64, "rank": 2, "modules": 1, "R": np.ones(4)}
    with pytest.raises(AdapterFormatError) as e:
        encode_adapter(**{**base, **change})
    assert e.value.code == code
    assert part in str(e.value)


def test_reader_reports_offending_values():
    with pytest.raises(AdapterFormatError) as e:
        decode_adapter((FIXTURES / "value-inf.safetensors").read_bytes())
    assert e.value.detail == {"tensor": "R", "index": 3, "value": "Infinity"}
    with pytest.raises(AdapterFormatError) as e:
        decode_adapter((FIXTURES / "ts-f16.safetensors").read_bytes(), {"rank": 8})
    assert e.value.code == "rank_mismatch" and "8" in str(e.value)


def test_reader_never_raises_anything_else_on_mutations():
    rng = np.random.default_rng(0)
    sources = [data_of(c) for c in VALID]
    for i in range(3000):
        b = bytearray(sources[i % len(sources)])
        kind = i % 3
        at = int(rng.integers(0, len(b)))
        if kind == 0:
            b[at] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            del b[at:]
        else:
            b[at:at + int(rng.integers(0, 8))] = rng.integers(0, 256, int(rng.integers(0, 8)), dtype=np.uint8).tobytes()
        try:
            decode_adapter(bytes(b))
        except AdapterFormatError as e:
            assert "unexpected failure" not in str(e)


def test_writer_refuses_a_header_past_the_limit_and_accepts_ordinary_labels():
    def head(labels):
        return {"weight": np.zeros((256, 1)), "bias": np.zeros(256), "classes": 256, "hidden": 1, "labels": labels}

    base = {"model": "m", "factors": "sha256:" + "a" * 64, "rank": 2, "modules": 1, "R": np.ones(4)}
    quotes = [str(i).ljust(64, '"') for i in range(256)]
    with pytest.raises(AdapterFormatError) as e:
        encode_adapter(**base, head=head(quotes), metadata={"note": '"' * 1024})
    assert e.value.code == "header_too_large"
    plain = [str(i).ljust(64, "x") for i in range(256)]
    a = decode_adapter(encode_adapter(**base, head=head(plain), metadata={"note": "n" * 1024}))
    assert a.head.labels == plain
