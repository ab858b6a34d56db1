"""prepare: a pretrained model -> the static files every client downloads once.

    npm run prepare-model -- --preset smollm2-135m
    npm run prepare-model -- --preset tiny-llama --out /tmp/tiny-llama
    python -m loraxs.prepare --source ./my-llama-folder --targets all-linear --rank 8

Steps: load the base model; resolve target modules; SVD into frozen factors (or reuse the
folder's factors.safetensors bit for bit when rank, modules and source match: shipped adapters
are pinned to its digest); export ONNX with the LoRA-XS branch and one `R` input; check
onnxruntime against PyTorch and against the merged weights; write tokenizer files, reference
fixtures and manifest.json (docs/contracts.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from .lora_xs import Factors, file_digest, find_target_modules, inject, load_factors, save_factors
from .models import PRESETS, BaseModel, load_base
from .svd import SvdOptions, compute_factors

SCHEMA_VERSION = 1
FACTORS_FILE = "factors.safetensors"
DEFAULT_RANK = 16
# q and v: the LoRA-XS paper's default; SmolLM2 then has M = 60 modules and R is 60·16·16·2 B = 30 KB in F16.
DEFAULT_TARGETS = {"decoder": "q_proj,v_proj", "encoder": "query,value"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
REPO_ROOT = Path(__file__).resolve().parents[2]
# Presets whose traced fp32 graph is off unless asked (--fp32-graph, or --train-step, whose graph
# reads the traced graph's weights file): no device runs it first, SmolLM2's is 0.55 GB and doubles its
# prepare time on a 2-core machine (133 s against 65 s from scratch), and Gemma 3 270M's is 1.07 GB.
# Their client graphs are checked against PyTorch directly.
NO_TRACED_GRAPH = ("smollm2-135m", "gemma3-270m")
CLIENT_CHECK_TOLERANCE = 1e-3  # the client graphs against PyTorch, when there is no traced graph to check


def log(msg: str) -> None:
    print(msg, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="prepare-model", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=PRESETS, help="a known model")
    src.add_argument("--source", help="a local Hugging Face folder (Llama, Gemma 3 or BERT) or a .gguf file (llama, gemma3)")
    p.add_argument("--id", help="manifest id (default: the preset, or the folder/file name)")
    p.add_argument("--out", help="output folder (default: models/<id>)")
    p.add_argument("--rank", type=int, default=DEFAULT_RANK, help=f"LoRA-XS rank r (default {DEFAULT_RANK})")
    p.add_argument("--targets", help="module names (q_proj,v_proj), re:<regex>, or all-linear "
                   f"(default: {DEFAULT_TARGETS['decoder']} for decoders, {DEFAULT_TARGETS['encoder']} for encoders)")
    p.add_argument("--exact", action="store_true", help="full SVD instead of the randomized one")
    p.add_argument("--factors", choices=("svd", "population"), default=None,
                   help="how to make the factors: the weights' own SVD, or the span of factor users' LoRA updates "
                   "(needs --factor-data); default: keep a matching factors.safetensors, else svd")
    p.add_argument("--factor-data", help='population factors: JSON(.gz) {"users": {name: [text, ...]}} of factor users '
                   "(never the users you evaluate on)")
    p.add_argument("--factor-tokens", type=int, default=65_536, help="population factors: tokens read per factor user")
    p.add_argument("--factors-from", metavar="FILE", help="import a factors.safetensors made elsewhere (e.g. by "
                   "bench/quality.py --factors-out); its rank and modules must match")
    p.add_argument("--oversample", type=int, default=SvdOptions.oversample)
    p.add_argument("--niter", type=int, default=SvdOptions.niter, help="power iterations")
    p.add_argument("--seed", type=int, default=0, help="SVD seed (and weights of the random presets)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="SVD device")
    p.add_argument("--skip-export", action="store_true", help="factors, tokenizer and manifest only")
    p.add_argument("--recompute-factors", action="store_true", help="ignore an existing factors.safetensors")
    p.add_argument("--reuse-onnx", action="store_true",
                   help="keep an existing model.onnx(+.data) from an earlier run with the same factors; still check it")
    p.add_argument("--no-reference", action="store_true", help="do not write reference fixtures")
    p.add_argument("--fp32-graph", action=argparse.BooleanOptionalAction, default=None,
                   help=f"the traced fp32 graph (model.onnx); default on, off for {', '.join(NO_TRACED_GRAPH)} "
                        "unless --train-step asks for it")
    p.add_argument("--no-client-graph", action="store_true",
                   help="decoders: skip the fused client graph (model.q4.onnx or model.fused.onnx, listed in graphs)")
    p.add_argument("--train-step", metavar="BxT", nargs="?", const="1x128",
                   help="decoders: also export the on-device training step for batch B, length T "
                        "(model.train.onnx, listed in the manifest as onnx_train; weights shared with model.onnx.data; default 1x128)")
    args = p.parse_args(argv)
    if args.train_step and args.fp32_graph is False:
        p.error("--train-step reads the traced graph's weights file (model.onnx.data); drop --no-fp32-graph")
    return args


def wants_traced_graph(args: argparse.Namespace) -> bool:
    """--[no-]fp32-graph when given; else on, except for NO_TRACED_GRAPH presets without --train-step."""
    if args.fp32_graph is not None:
        return args.fp32_graph
    return args.preset not in NO_TRACED_GRAPH or bool(args.train_step)


def module_table(model: torch.nn.Module, names: list[str]) -> list[dict]:
    return [{"name": n, "in": model.get_submodule(n).in_features, "out": model.get_submodule(n).out_features}
            for n in names]


def canonical_source(source: dict) -> str:
    return json.dumps(source, sort_keys=True, separators=(",", ":"))


def weights_digest(model: torch.nn.Module, names: list[str]) -> str:
    """sha256 of the adapted weights (fp32 bytes, module order): factors are only valid for these."""
    import hashlib

    h = hashlib.sha256()
    for n in names:
        h.update(model.get_submodule(n).weight.detach().to(torch.float32).contiguous().numpy().tobytes())
    return f"sha256:{h.hexdigest()}"


def reusable_factors(path: Path, base: BaseModel, names: list[str], rank: int,
                     kind: str | None = None) -> tuple[Factors | None, str]:
    """The existing factor file when it matches (rank, modules, source, and `kind` if given); else None and why not."""
    if not path.is_file():
        return None, "no factor file yet"
    try:
        f = load_factors(path)
    except Exception as e:  # unreadable or foreign file: recompute, say why
        return None, f"existing file unreadable ({e})"
    made = "population" if f.metadata.get("svd") == "population" else "svd"
    if kind is not None and made != kind:
        return None, f"the file holds {made} factors; --factors {kind} asked"
    if f.rank != rank:
        return None, f"rank {f.rank} != {rank}"
    if f.names != names:
        return None, f"module list differs ({len(f.names)} vs {len(names)} modules)"
    if f.metadata.get("source") != canonical_source(base.source):
        return None, f"source differs ({f.metadata.get('source')} vs {canonical_source(base.source)})"
    if "weights" in f.metadata and f.metadata["weights"] != weights_digest(base.model, names):
        return None, "the adapted weights changed"
    for n in names:
        m = base.model.get_submodule(n)
        if tuple(f.down[n].shape) != (rank, m.in_features) or tuple(f.up[n].shape) != (m.out_features, rank):
            return None, f"shapes differ at {n}"
    return f, "rank, modules and source match"


def svd_block(f: Factors) -> dict:
    md = f.metadata
    block: dict = {"method": md.get("svd", "randomized")}
    if "oversample" in md:
        block["oversample"] = int(md["oversample"])
    if "niter" in md:
        block["niter"] = int(md["niter"])
    block["seed"] = int(md.get("seed", 0))
    if "factor_users" in md:
        block["factor_users"] = int(md["factor_users"])
    if "factor_data" in md:
        block["factor_data"] = md["factor_data"]
    return block


def build_population(base: BaseModel, names: list[str], args: argparse.Namespace, model_id: str) -> Factors:
    """Population factors from --factor-data: LoRA r=8 for every factor user, then the span of their updates."""
    import copy

    from .population import population_factors, read_factor_data, train_factor_users
    from .train import TrainConfig

    users = read_factor_data(args.factor_data, base.tokenizer, 256, args.factor_tokens, args.seed)
    steps = max(1, max(len(u.train) for u in users) // 4)  # one pass at 4 blocks a step
    log(f"prepare: population factors from {len(users)} factor users ({args.factor_data}), {steps} steps")
    model = copy.deepcopy(base.model).to(args.device)
    cfg = TrainConfig(device=args.device, progress=False, eval_every=max(1, steps // 8))
    deltas = train_factor_users(model, names, users, [1e-3, 3e-3, 1e-2], steps, 4, cfg, args.seed,
                                log=lambda m: log("prepare:" + m))
    del model
    desc = f"{Path(args.factor_data).name}: first {args.factor_tokens} tokens of each of {len(users)} users"
    return population_factors(base.model, deltas, args.rank, model_id, desc)


def import_factors(src: Path, dest: Path, base: BaseModel, names: list[str], rank: int, targets: str, model_id: str) -> None:
    """Copies a factor file made elsewhere into the model folder, checked against this model and re-stamped
    with its source and weights (so later runs reuse it like their own)."""
    f = load_factors(src)
    if f.rank != rank or f.names != names:
        raise ValueError(f"--factors-from {src}: rank {f.rank} and {len(f.names)} modules; this model needs rank {rank} "
                         f"and {len(names)} modules ({targets})")
    for n in names:
        m = base.model.get_submodule(n)
        if tuple(f.down[n].shape) != (rank, m.in_features) or tuple(f.up[n].shape) != (m.out_features, rank):
            raise ValueError(f"--factors-from {src}: shapes differ at {n}")
    meta = {k: v for k, v in f.metadata.items() if k not in ("format", "model", "rank", "modules", "order")}
    meta.update(source=canonical_source(base.source), targets=targets, weights=weights_digest(base.model, names))
    digest = save_factors(dest, Factors(names, f.down, f.up, rank, meta, ""), model_id, meta)
    log(f"prepare: imported {src} as {dest} ({digest})")


def write_tokenizer(tokenizer, family: str, out: Path, max_length: int) -> dict:
    """tokenizer.json + tokenizer_config.json (chat template inline) for @huggingface/tokenizers."""
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    cfg: dict = {
        "tokenizer_class": "GPT2Tokenizer" if family == "decoder" else "BertTokenizer",
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": False,
    }
    for key in ("bos_token", "eos_token", "unk_token", "pad_token", "cls_token", "sep_token", "mask_token"):
        value = getattr(tokenizer, key, None)
        if value is not None:
            cfg[key] = str(value)
    if family == "decoder":
        cfg["add_bos_token"] = False
        cfg["add_prefix_space"] = False
    else:
        cfg["do_lower_case"] = bool(getattr(tokenizer, "do_lower_case", True))
    template = getattr(tokenizer, "chat_template", None)
    if template:
        cfg["chat_template"] = template
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    return {"files": list(TOKENIZER_FILES), "chat_template": bool(template)}


ROLES = {
    "model.onnx": "onnx",
    "model.onnx.data": "onnx-data",
    "model.train.onnx": "onnx-train",
    **{f"model.{n}.onnx": "onnx" for n in ("q4", "fused")},
    FACTORS_FILE: "factors",
    "tokenizer.json": "tokenizer",
    "tokenizer_config.json": "tokenizer-config",
}


def _role(name: str) -> str:
    if name in ROLES:
        return ROLES[name]
    return "onnx-data" if ".onnx.data." in name else "reference"


def file_entries(out: Path, names: list[str]) -> list[dict]:
    return [{"name": n, "role": _role(n), "sha256": file_digest(out / n), "bytes": (out / n).stat().st_size}
            for n in names]


def _previous_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def write_manifest(out: Path, manifest: dict) -> None:
    old = _previous_manifest(out)
    if old is not None and {**old, "created": None} == {**manifest, "created": None}:
        manifest = {**manifest, "created": old["created"]}  # nothing changed: the tracked file stays as it is
    try:
        from . import manifest as manifest_module  # the shared validator, when present
    except ImportError:
        manifest_module = None
    if manifest_module is not None and hasattr(manifest_module, "write_manifest"):
        manifest_module.write_manifest(out / "manifest.json", manifest)
    else:
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _client_graphs(out: Path, manifest: dict, base: BaseModel) -> tuple[list[dict], list[str]]:
    """The fused client graph (docs/prepare.md, "Client graph"): from the GGUF's own blocks when
    the source is one, else from the loaded model's fp32 weights."""
    from .export_client import client_graphs, locate_gguf
    from .gguf_llama import from_state_dict

    weights = None
    if locate_gguf(manifest) is None:
        state = {k: v.detach().float().numpy() for k, v in base.model.state_dict().items()}
        weights = from_state_dict(state, base.model.config.to_dict())
    return client_graphs(out, manifest, weights, log=log)


def client_check(out: Path, manifest: dict) -> dict:
    """Without a traced graph the manifest's `check` is the client graphs' own against PyTorch; the
    reference fixtures' tolerance follows it (reference.reference_tolerance)."""
    from .reference import REFERENCE_FILE, reference_tolerance

    checks = [g["check"] for g in manifest["graphs"] if g["check"] is not None]
    worst = max(c["max_abs_error"] for c in checks)
    if worst > CLIENT_CHECK_TOLERANCE or not all(c["greedy_equal"] for c in checks):
        raise RuntimeError(f"client graphs differ from PyTorch: max |logit error| {worst:.2e} (tolerance "
                           f"{CLIENT_CHECK_TOLERANCE}), greedy equal {[c['greedy_equal'] for c in checks]}")
    ref = json.loads((out / REFERENCE_FILE).read_text())
    ref["tolerance"] = reference_tolerance(worst)
    (out / REFERENCE_FILE).write_text(json.dumps(ref, separators=(",", ":")) + "\n")
    manifest["files"] = [e if e["name"] != REFERENCE_FILE else file_entries(out, [REFERENCE_FILE])[0] for e in manifest["files"]]
    return {"runtime": "onnxruntime-cpu", "reference": "pytorch", "max_abs_error": worst,
            "tolerance": CLIENT_CHECK_TOLERANCE, "cases": checks[0]["cases"]}


def prepare(args: argparse.Namespace) -> Path:
    t_start = time.perf_counter()
    spec = args.preset or args.source
    log(f"prepare: loading {spec}")
    t = time.perf_counter()
    base = load_base(spec, seed=args.seed)
    model_id = args.id or base.id
    out = Path(args.out) if args.out else REPO_ROOT / "models" / model_id
    out.mkdir(parents=True, exist_ok=True)
    log(f"prepare: {base.architecture} ({base.family}) loaded in {time.perf_counter() - t:.1f} s; output {out}")

    targets = args.targets or DEFAULT_TARGETS[base.family]
    names = find_target_modules(base.model, targets)
    modules = module_table(base.model, names)
    max_rank = min(min(m["in"], m["out"]) for m in modules)
    if not 1 <= args.rank <= max_rank:
        raise ValueError(f"--rank {args.rank} is outside [1, {max_rank}] (the smallest adapted layer's side)")
    log(f"prepare: {len(names)} target modules for {targets!r}, rank {args.rank}: R is "
        f"[{len(names)}, {args.rank}, {args.rank}] = {len(names) * args.rank * args.rank * 2} bytes in F16")

    factors_path = out / FACTORS_FILE
    if args.factors == "population" and not args.factor_data and not args.factors_from:
        raise ValueError("--factors population needs --factor-data (the factor users' texts) or --factors-from")
    if args.factors_from:
        import_factors(Path(args.factors_from), factors_path, base, names, args.rank, targets, model_id)
    factors, why = (None, "--recompute-factors") if args.recompute_factors else reusable_factors(
        factors_path, base, names, args.rank, args.factors)
    timings: dict[str, float] = {"load": time.perf_counter() - t}
    svd_report = None
    if factors is not None:
        log(f"prepare: reusing {factors_path} ({factors.digest}): {why}")
    else:
        log(f"prepare: computing factors ({why})")
        t = time.perf_counter()
        if args.factors == "population":
            computed = build_population(base, names, args, model_id)
        else:
            opts = SvdOptions("exact" if args.exact else "randomized", args.oversample, args.niter, args.seed, args.device)
            computed, svd_report = compute_factors(base.model, names, args.rank, opts, model_id, log=log)
        extra = {**computed.metadata, "source": canonical_source(base.source), "targets": targets,
                 "weights": weights_digest(base.model, names)}
        digest = save_factors(factors_path, computed, model_id, extra)
        factors = load_factors(factors_path)
        assert factors.digest == digest
        timings["factors"] = svd_report.seconds if svd_report is not None else time.perf_counter() - t
        log(f"prepare: wrote {factors_path} ({factors_path.stat().st_size} bytes, {digest})")

    tokenizer_block = write_tokenizer(base.tokenizer, base.family, out, base.config["max_position_embeddings"])
    source = inject(base.model, factors)
    files = [FACTORS_FILE, *TOKENIZER_FILES]
    onnx_block = None
    check = None
    train = None  # the manifest's onnx_train block, with --train-step
    traced = wants_traced_graph(args)
    client_only = not args.skip_export and not traced and base.family == "decoder"
    if client_only:
        from .reference import write_reference

        log("prepare: no traced fp32 graph (--no-fp32-graph): the client graphs are checked against PyTorch")
        t = time.perf_counter()
        files += write_reference(base.model, source, base.tokenizer, base.family, model_id, factors.digest, out,
                                 seed=args.seed, log=log)
        timings["reference"] = time.perf_counter() - t
    elif not args.skip_export:
        from .export_onnx import DATA_FILE, ONNX_FILE, OPSET, export, verify

        t = time.perf_counter()
        old = _previous_manifest(out)
        if args.reuse_onnx and (out / ONNX_FILE).is_file() and (out / DATA_FILE).is_file():
            if old is not None and old.get("factors", {}).get("sha256") != factors.digest:
                raise ValueError(f"--reuse-onnx: {out / ONNX_FILE} was exported with factors "
                                 f"{old['factors']['sha256']}, not {factors.digest}; export again")
            log(f"prepare: --reuse-onnx: keeping {out / ONNX_FILE}")
        else:
            export(base.model, source, base.family, out, log=log)
        timings["export"] = time.perf_counter() - t
        t = time.perf_counter()
        check = verify(base.model, source, base.family, out / ONNX_FILE, seed=args.seed, log=log)
        timings["check"] = time.perf_counter() - t
        onnx_block = {"file": ONNX_FILE, "data_file": DATA_FILE, "opset": OPSET, "weights_dtype": "F32",
                      "quantization": "none"}
        files += [ONNX_FILE, DATA_FILE]
        if not args.no_reference:
            from .reference import write_reference

            t = time.perf_counter()
            files += write_reference(base.model, source, base.tokenizer, base.family, model_id, factors.digest, out,
                                     seed=args.seed, check_error=check["max_abs_error"], log=log)
            timings["reference"] = time.perf_counter() - t
        if args.train_step and base.family == "decoder":
            from .export_train_step import export_train_step, train_block, verify_train_step

            t = time.perf_counter()
            batch, seq = (int(x) for x in args.train_step.lower().split("x"))
            info = export_train_step(base.model, source, out, batch, seq, log=log)
            train = train_block(info, verify_train_step(base.model, source, out, info, log=log))
            files.append(info["file"])
            timings["train-step"] = time.perf_counter() - t
    else:
        log("prepare: --skip-export: no ONNX, check or reference fixtures")

    if base.family == "decoder":
        from .export_onnx import decoder_io

        inputs, outputs = decoder_io(1)
        inputs = inputs[:4] + ["past_key_values.{i}.key", "past_key_values.{i}.value"]
        outputs = outputs[:1] + ["present.{i}.key", "present.{i}.value"]
    else:
        inputs = ["input_ids", "attention_mask", "token_type_ids", "R"]
        outputs = ["last_hidden_state", "sentence_embedding"]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "id": model_id,
        "family": base.family,
        "architecture": base.architecture,
        "source": base.source,
        "rank": args.rank,
        "targets": targets,
        "modules": modules,
        "factors": {"file": FACTORS_FILE, "sha256": factors.digest, "dtype": "F32", "svd": svd_block(factors)},
        "onnx": onnx_block,
        "io": {"inputs": inputs, "outputs": outputs,
               "R": {"name": "R", "shape": [len(names), args.rank, args.rank], "dtype": "float32"}},
        "config": base.config,
        "tokenizer": tokenizer_block,
        "files": file_entries(out, files),
        "check": check,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if train is not None:
        manifest["onnx_train"] = train
    if base.family == "decoder" and (onnx_block is not None or client_only) and not args.no_client_graph:
        t = time.perf_counter()
        manifest["graphs"], graph_files = _client_graphs(out, manifest, base)
        manifest["files"] += file_entries(out, graph_files)
        timings["client-graph"] = time.perf_counter() - t
        if client_only:
            manifest["check"] = client_check(out, manifest)
    write_manifest(out, manifest)
    timings["total"] = time.perf_counter() - t_start
    log("prepare: timings " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    if svd_report is not None and svd_report.sample_rel_errors:
        log(f"prepare: svd sample max rel. error {max(svd_report.sample_rel_errors.values()):.2e}")
    log(f"prepare: done: {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prepare(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
