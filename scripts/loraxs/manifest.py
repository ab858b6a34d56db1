"""The model manifest (docs/manifest.md), Python side: the same rules as src/manifest's zod
schema, reporting problems with the same dotted paths and codes (missing, unknown_key,
invalid, inconsistent).

    m = load_manifest("models/smollm2-135m/manifest.json")
    decode_adapter(data, expect=expectations_for(m))
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from loraxs.format import MAX_MODEL_ID_BYTES, MAX_MODULES, MAX_RANK, AdapterExpectations

MANIFEST_SCHEMA_VERSION = 1
# `onnx-train` and `reference` are fetched by clients only on request.
# Where a graph variant runs (docs/manifest.md, `graphs`): the client's backends.
GRAPH_DEVICES = ("webgpu", "wasm", "cpu")
FILE_ROLES = ("onnx", "onnx-data", "onnx-train", "factors", "tokenizer", "tokenizer-config", "reference")
# The training-step graph's input and output names (docs/on-device-training.md).
TRAIN_INPUTS = ("input_ids", "attention_mask", "labels", "R")
TRAIN_OUTPUTS = ("loss", "grad_R")
FAMILIES = ("decoder", "encoder")
WEIGHTS_DTYPES = ("F32", "F16", "BF16", "Q8", "Q4")

_MODEL_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CREATED = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_MISSING = object()


@dataclass(frozen=True)
class ManifestIssue:
    path: str  # dotted, e.g. "modules.3.in"; "" for the whole manifest
    code: str  # missing | unknown_key | invalid | inconsistent
    message: str


class ManifestError(ValueError):
    def __init__(self, issues: list[ManifestIssue]) -> None:
        self.issues = issues
        super().__init__(
            "invalid manifest: " + "; ".join(f"{i.path or '(root)'}: {i.message}" for i in issues)
        )


def _show(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False, default=repr)
    return s if len(s) <= 80 else s[:77] + "..."


class _Checker:
    """Collects issues while walking the JSON, like zod does."""

    def __init__(self) -> None:
        self.issues: list[ManifestIssue] = []

    def add(self, path: list, code: str, message: str) -> None:
        self.issues.append(ManifestIssue(".".join(str(p) for p in path), code, message))

    def bad(self, path: list, value: Any, expected: str) -> None:
        self.add(path, "invalid", f"expected {expected}; got {_show(value)}")

    # --- leaves: each returns True when the value is acceptable
    def int_(self, path, v, lo=None, hi=None) -> bool:
        # JSON has one number type: 16.0 is the integer 16 to a JavaScript reader, so here too.
        if type(v) is float and v.is_integer():
            v = int(v)
        if type(v) is not int or abs(v) > 2**53 - 1:
            self.bad(path, v, "an integer")
            return False
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.bad(path, v, f"an integer in {lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}")
            return False
        return True

    def num(self, path, v, lo=None, gt=None) -> bool:
        if type(v) not in (int, float) or v != v or v in (float("inf"), float("-inf")):
            self.bad(path, v, "a number")
            return False
        if (lo is not None and v < lo) or (gt is not None and v <= gt):
            self.bad(path, v, f"a number {'>= ' + str(lo) if lo is not None else '> ' + str(gt)}")
            return False
        return True

    def str_(self, path, v, pattern=None, what="a non-empty string", max_len=None) -> bool:
        if not isinstance(v, str) or v == "":
            self.bad(path, v, "a non-empty string")
            return False
        if (pattern is not None and not pattern.fullmatch(v)) or (max_len is not None and len(v) > max_len):
            self.bad(path, v, what)
            return False
        return True

    def one_of(self, path, v, allowed) -> bool:
        if v not in allowed or type(v) is bool:
            self.bad(path, v, "one of " + ", ".join(_show(a) for a in allowed))
            return False
        return True

    def bool_(self, path, v) -> bool:
        if type(v) is not bool:
            self.bad(path, v, "true or false")
            return False
        return True

    def nullable(self, check, path, v, *args, **kw) -> bool:
        return True if v is None else check(path, v, *args, **kw)

    def obj(self, path, v, spec: dict, strict: bool = True) -> bool:
        """spec: key -> (checker(path, value) | None for optional-absent)."""
        if not isinstance(v, dict):
            if v is _MISSING:
                self.add(path, "missing", "missing (expected object)")
            else:
                self.bad(path, v, "an object")
            return False
        ok = True
        for key, (check, optional) in spec.items():
            if key not in v:
                if not optional:
                    self.add([*path, key], "missing", "missing")
                    ok = False
                continue
            ok = check([*path, key], v[key]) and ok
        if strict:
            for key in v:
                if key not in spec:
                    self.add([*path, key], "unknown_key", f'unknown key "{key}"')
                    ok = False
        return ok

    def array(self, path, v, item, lo=0, hi=None) -> bool:
        if not isinstance(v, list):
            self.bad(path, v, "an array")
            return False
        if len(v) < lo or (hi is not None and len(v) > hi):
            self.bad(path, f"{len(v)} items", f"{lo}..{hi if hi is not None else 'any'} items")
            return False
        results = [item([*path, i], x) for i, x in enumerate(v)]
        return all(results)


def _req(check):
    return (check, False)


def _opt(check):
    return (check, True)


def _check_manifest(d: Any) -> list[ManifestIssue]:
    c = _Checker()
    if not isinstance(d, dict):
        c.bad([], d, "an object")
        return c.issues
    family = d.get("family", _MISSING)
    if family is _MISSING:
        c.add(["family"], "missing", "missing")
        return c.issues
    if family not in FAMILIES:
        c.bad(["family"], family, "one of " + ", ".join(_show(f) for f in FAMILIES))
        return c.issues

    text = lambda p, v: c.str_(p, v)  # noqa: E731
    name = lambda p, v: c.str_(p, v, _FILE_NAME, "a plain file name")  # noqa: E731
    digest = lambda p, v: c.str_(p, v, _DIGEST, '"sha256:" and 64 lowercase hex digits')  # noqa: E731
    positive = lambda p, v: c.int_(p, v, 1)  # noqa: E731
    count = lambda p, v: c.int_(p, v, 0)  # noqa: E731
    token_id = lambda p, v: c.nullable(c.int_, p, v, 0)  # noqa: E731
    revision = _req(lambda p, v: v is None or c.str_(p, v))
    nullable_str = lambda p, v: v is None or isinstance(v, str) or c.bad(p, v, "a string or null")  # noqa: E731

    def source(p, v):
        kinds = {
            "pypi": {"package": _req(text), "version": _req(nullable_str), "file": _req(text), "revision": revision},
            "hf-folder": {"path": _req(text), "revision": revision},
            "gguf": {"path": _req(text), "file": _req(text), "revision": revision},
            "random": {"preset": _req(text), "seed": _req(lambda p2, v2: c.int_(p2, v2)), "revision": revision},
        }
        if not isinstance(v, dict):
            c.bad(p, v, "an object")
            return False
        if v.get("kind") not in kinds:
            c.bad([*p, "kind"], v.get("kind"), "one of " + ", ".join(_show(k) for k in kinds))
            return False
        return c.obj(p, v, {"kind": _req(lambda *_: True), **kinds[v["kind"]]}, strict=False)

    module = lambda p, v: c.obj(p, v, {"name": _req(text), "in": _req(positive), "out": _req(positive)})  # noqa: E731
    svd = lambda p, v: c.obj(  # noqa: E731
        p,
        v,
        {
            "method": _req(lambda p2, v2: c.one_of(p2, v2, ("randomized", "exact", "population"))),
            "oversample": _opt(count),
            "niter": _opt(count),
            "seed": _req(lambda p2, v2: c.int_(p2, v2)),
            "factor_users": _opt(count),
            "factor_data": _opt(text),
        },
    )
    factors = lambda p, v: c.obj(  # noqa: E731
        p,
        v,
        {
            "file": _req(name),
            "sha256": _req(digest),
            "dtype": _req(lambda p2, v2: c.one_of(p2, v2, ("F32",))),
            "svd": _req(svd),
        },
    )
    onnx = lambda p, v: v is None or c.obj(  # noqa: E731
        p,
        v,
        {
            "file": _req(name),
            "data_file": _req(lambda p2, v2: v2 is None or name(p2, v2)),
            "opset": _req(positive),
            "weights_dtype": _req(lambda p2, v2: c.one_of(p2, v2, WEIGHTS_DTYPES)),
            "quantization": _req(text),
        },
    )

    def r_shape(p, v):
        if not isinstance(v, list) or len(v) != 3:
            c.bad(p, v, "[modules, rank, rank]")
            return False
        return all([positive([*p, i], x) for i, x in enumerate(v)])

    io = lambda p, v: c.obj(  # noqa: E731
        p,
        v,
        {
            "inputs": _req(lambda p2, v2: c.array(p2, v2, text, lo=1)),
            "outputs": _req(lambda p2, v2: c.array(p2, v2, text, lo=1)),
            "R": _req(
                lambda p2, v2: c.obj(
                    p2,
                    v2,
                    {
                        "name": _req(lambda p3, v3: c.one_of(p3, v3, ("R",))),
                        "shape": _req(r_shape),
                        "dtype": _req(lambda p3, v3: c.one_of(p3, v3, ("float32",))),
                    },
                )
            ),
        },
    )
    if family == "decoder":
        config_spec = {
            k: _req(positive)
            for k in ("hidden_size", "num_layers", "num_attention_heads", "num_kv_heads", "head_dim", "vocab_size")
        }
        config_spec |= {"bos_token_id": _req(token_id), "eos_token_id": _req(token_id),
                        "max_position_embeddings": _req(positive)}
    else:
        config_spec = {
            k: _req(positive)
            for k in ("hidden_size", "num_layers", "num_attention_heads", "vocab_size",
                      "max_position_embeddings", "type_vocab_size")
        }
        config_spec |= {
            "pad_token_id": _req(token_id),
            "cls_token_id": _req(token_id),
            "sep_token_id": _req(token_id),
            "pooling": _req(lambda p, v: c.one_of(p, v, ("mean",))),
            "normalize": _req(c.bool_),
        }
    file_entry = lambda p, v: c.obj(  # noqa: E731
        p,
        v,
        {
            "name": _req(name),
            "role": _req(lambda p2, v2: c.one_of(p2, v2, FILE_ROLES)),
            "sha256": _req(digest),
            "bytes": _req(count),
        },
    )
    check = lambda p, v: v is None or c.obj(  # noqa: E731
        p,
        v,
        {
            "runtime": _req(text),
            "reference": _req(text),
            "max_abs_error": _req(lambda p2, v2: c.num(p2, v2, lo=0)),
            "tolerance": _req(lambda p2, v2: c.num(p2, v2, gt=0)),
            "cases": _req(count),
        },
    )
    def fixed_list(p, v, want):  # a tuple of literals in zod: length first, then each item
        if not isinstance(v, list) or len(v) != len(want):
            c.bad(p, v, _show(list(want)))
            return False
        return all([c.one_of([*p, i], x, (w,)) for i, (x, w) in enumerate(zip(v, want))])

    train_check = lambda p, v: v is None or c.obj(  # noqa: E731
        p,
        v,
        {
            "runtime": _req(text),
            "reference": _req(text),
            "loss": _req(lambda p2, v2: c.num(p2, v2)),
            **{k: _req(lambda p2, v2: c.num(p2, v2, lo=0))
               for k in ("loss_rel_error", "grad_max_abs_error", "grad_rel_error", "grad_abs_max")},
            "tolerance": _req(lambda p2, v2: c.obj(p2, v2, {"loss": _req(lambda p3, v3: c.num(p3, v3, gt=0)),
                                                            "grad": _req(lambda p3, v3: c.num(p3, v3, gt=0))})),
        },
    )
    onnx_train = lambda p, v: c.obj(  # noqa: E731
        p,
        v,
        {
            "file": _req(name),
            "data_file": _req(lambda p2, v2: v2 is None or name(p2, v2)),
            "opset": _req(positive),
            "inputs": _req(lambda p2, v2: fixed_list(p2, v2, TRAIN_INPUTS)),
            "outputs": _req(lambda p2, v2: fixed_list(p2, v2, TRAIN_OUTPUTS)),
            "shapes": _req(lambda p2, v2: c.obj(p2, v2, {"batch": _req(positive),
                                                         "seq": _req(lambda p3, v3: c.int_(p3, v3, 2))})),
            "ignore_index": _req(lambda p2, v2: c.int_(p2, v2)),
            "check": _req(train_check),
        },
    )
    graph_check = lambda p, v: v is None or c.obj(  # noqa: E731
        p,
        v,
        {
            "runtime": _req(text),
            "reference": _req(text),
            "max_abs_error": _req(lambda p2, v2: c.num(p2, v2, lo=0)),
            "greedy_equal": _req(c.bool_),
            "cases": _req(count),
        },
    )
    graph = lambda p, v: c.obj(  # noqa: E731
        p,
        v,
        {
            "name": _req(lambda p2, v2: c.str_(p2, v2, _MODEL_ID, "a graph name: lowercase letters, digits, '.', '_', '-'")),
            "file": _req(name),
            "data_files": _req(lambda p2, v2: c.array(p2, v2, name)),
            "devices": _req(lambda p2, v2: c.array(p2, v2, lambda p3, v3: c.one_of(p3, v3, GRAPH_DEVICES), lo=1)),
            "dtype": _req(lambda p2, v2: c.one_of(p2, v2, ("float32", "float16"))),
            "weights_dtype": _req(lambda p2, v2: c.one_of(p2, v2, WEIGHTS_DTYPES)),
            "quantization": _req(text),
            "opset": _req(positive),
            "inputs": _req(lambda p2, v2: c.array(p2, v2, text, lo=1)),
            "prefill_chunk": _opt(positive),
            "check": _req(graph_check),
        },
    )
    spec = {
        "schema_version": _req(lambda p, v: c.one_of(p, v, (MANIFEST_SCHEMA_VERSION,))),
        "id": _req(lambda p, v: c.str_(p, v, _MODEL_ID, "a model id: lowercase letters, digits, '.', '_', '-'",
                                       MAX_MODEL_ID_BYTES)),
        "family": _req(lambda *_: True),
        "architecture": _req(text),
        "source": _req(source),
        "rank": _req(lambda p, v: c.int_(p, v, 1, MAX_RANK)),
        "targets": _req(text),
        "modules": _req(lambda p, v: c.array(p, v, module, lo=1, hi=MAX_MODULES)),
        "factors": _req(factors),
        "onnx": _req(onnx),
        "io": _req(io),
        "config": _req(lambda p, v: c.obj(p, v, config_spec, strict=False)),
        "tokenizer": _req(lambda p, v: c.obj(p, v, {"files": _req(lambda p2, v2: c.array(p2, v2, name)),
                                                     "chat_template": _req(c.bool_)})),
        "files": _req(lambda p, v: c.array(p, v, file_entry)),
        "check": _req(check),
        "onnx_train": _opt(onnx_train),
        "graphs": _opt(lambda p, v: c.array(p, v, graph, lo=1)),
        "created": _req(lambda p, v: c.str_(p, v, _CREATED, "UTC ISO 8601 like 2026-11-28T00:00:00Z")),
    }
    if not c.obj([], d, spec) or c.issues:
        return c.issues
    _check_consistency(c, d)
    return c.issues


def _check_consistency(c: _Checker, m: dict) -> None:
    """Rules that tie fields together (run once every field is well-formed, as in zod)."""
    seen: set[str] = set()
    for i, mod in enumerate(m["modules"]):
        if mod["name"] in seen:
            c.add(["modules", i, "name"], "inconsistent", f"module {_show(mod['name'])} is listed twice")
        seen.add(mod["name"])
        if m["rank"] > min(mod["in"], mod["out"]):
            c.add(["rank"], "inconsistent",
                  f"rank {m['rank']} exceeds min(in, out) = {min(mod['in'], mod['out'])} of {mod['name']}")
    shape = m["io"]["R"]["shape"]
    want = [len(m["modules"]), m["rank"], m["rank"]]
    if shape != want:
        c.add(["io", "R", "shape"], "inconsistent", f"io.R.shape {shape} is not [modules, rank, rank] = {want}")
    if "R" not in m["io"]["inputs"]:
        c.add(["io", "inputs"], "inconsistent", 'io.inputs does not name the "R" input')
    names: set[str] = set()
    for i, f in enumerate(m["files"]):
        if f["name"] in names:
            c.add(["files", i, "name"], "inconsistent", f"file {_show(f['name'])} is listed twice")
        names.add(f["name"])
    entry = next((f for f in m["files"] if f["name"] == m["factors"]["file"]), None)
    if entry is None:
        c.add(["files"], "inconsistent", f"files does not list the factors file {_show(m['factors']['file'])}")
    elif entry["sha256"] != m["factors"]["sha256"]:
        c.add(["factors", "sha256"], "inconsistent",
              f"factors.sha256 {m['factors']['sha256']} differs from files' entry {entry['sha256']}")
    if m["onnx"] is not None:
        for key in ("file", "data_file"):
            n = m["onnx"][key]
            if n is not None and n not in names:
                c.add(["onnx", key], "inconsistent", f"files does not list {_show(n)}")
    train = m.get("onnx_train")
    if train is not None:
        if m["family"] != "decoder":
            c.add(["onnx_train"], "inconsistent", f"onnx_train is for decoders; family is {_show(m['family'])}")
        entry = next((f for f in m["files"] if f["name"] == train["file"]), None)
        if entry is None or entry["role"] != "onnx-train":
            c.add(["onnx_train", "file"], "inconsistent",
                  f'files does not list {_show(train["file"])} with role "onnx-train"')
        if train["data_file"] is not None and train["data_file"] not in names:
            c.add(["onnx_train", "data_file"], "inconsistent", f"files does not list {_show(train['data_file'])}")
    _check_graphs(c, m)


def _check_graphs(c: _Checker, m: dict) -> None:
    roles = {f["name"]: f["role"] for f in m["files"]}
    seen: set[str] = set()
    for i, g in enumerate(m.get("graphs") or []):
        if g["name"] in seen:
            c.add(["graphs", i, "name"], "inconsistent", f"graph {_show(g['name'])} is listed twice")
        seen.add(g["name"])
        if roles.get(g["file"]) != "onnx":
            c.add(["graphs", i, "file"], "inconsistent", f'files does not list {_show(g["file"])} with role "onnx"')
        for j, n in enumerate(g["data_files"]):
            if roles.get(n) != "onnx-data":
                c.add(["graphs", i, "data_files", j], "inconsistent", f'files does not list {_show(n)} with role "onnx-data"')
        if "R" not in g["inputs"]:
            c.add(["graphs", i, "inputs"], "inconsistent", 'the graph\'s inputs do not name the "R" input')


def validate_manifest(d: Any) -> list[ManifestIssue]:
    """Every problem with a parsed manifest.json (empty when it is valid)."""
    return _check_manifest(d)


@dataclass
class Manifest:
    """A validated manifest.json; nested blocks stay plain JSON values."""

    schema_version: int
    id: str
    family: str
    architecture: str
    source: dict
    rank: int
    targets: str
    modules: list
    factors: dict
    onnx: dict | None
    io: dict
    config: dict
    tokenizer: dict
    files: list
    check: dict | None
    created: str
    onnx_train: dict | None = None  # optional key: absent (None here) when no training step was exported
    graphs: list | None = None  # optional key: the graph variants per device (absent: `onnx` is the only graph)

    def __post_init__(self) -> None:
        issues = validate_manifest(self.to_dict())
        if issues:
            raise ManifestError(issues)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("onnx_train", "graphs"):
            if d[key] is None:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        issues = validate_manifest(d)
        if issues:
            raise ManifestError(issues)
        return cls(**d)


def parse_manifest(d: Any) -> Manifest:
    return Manifest.from_dict(d)


def load_manifest(path: str | Path) -> Manifest:
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ManifestError([ManifestIssue("", "invalid", f"{path} is not JSON: {e}")]) from None
    return Manifest.from_dict(d)


def write_manifest(path: str | Path, manifest: Manifest | dict) -> Manifest:
    """Validates, then writes `manifest.json` (2-space indent, trailing newline)."""
    m = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)
    Path(path).write_text(json.dumps(m.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return m


def expectations_for(manifest: Manifest | dict) -> AdapterExpectations:
    """What an adapter for this model must match (encoders also pin the head's hidden size)."""
    m = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)
    return AdapterExpectations(
        model=m.id,
        factors=m.factors["sha256"],
        rank=m.rank,
        modules=len(m.modules),
        hidden=m.config["hidden_size"] if m.family == "encoder" else None,
    )


__all__ = [
    "MANIFEST_SCHEMA_VERSION",
    "FILE_ROLES",
    "TRAIN_INPUTS",
    "TRAIN_OUTPUTS",
    "Manifest",
    "ManifestError",
    "ManifestIssue",
    "expectations_for",
    "load_manifest",
    "parse_manifest",
    "validate_manifest",
    "write_manifest",
]
