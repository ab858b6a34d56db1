"""The training step of a decoder's R as a plain ONNX inference graph, and its numeric check.

    (input_ids, attention_mask, labels, R) -> (loss, grad_R)

Only R is trainable, so one step of training is an ordinary inference graph: the client runs
it with onnxruntime (web or node) and does the optimizer in JavaScript (src/client/train). The
user's text never leaves the device.

Recipe (docs/on-device-training.md): the step `loss, dL/dR` is traced to an FX graph with
`make_fx` (fake tensors, core-ATen decompositions, `slice_backward` as a zero Pad instead of
ScatterND), then exported by `torch.onnx.export(dynamo=True)` from a module that holds the
frozen weights. The loss avoids the ops the WebGPU kernels lack: log-softmax is written as
`z - log Σ exp z` with `z = x - max(x)` (no LogSoftmax), masks are float arithmetic (no And).

Shapes are static ([B, T] chosen at export); the client packs text into B x T blocks.
`labels` are the input ids aligned with `input_ids` (the graph shifts them), -100 = ignore.
The loss is the mean next-token cross-entropy over the labels that are not -100.

Weights are shared with the inference graph: every initializer whose bytes equal a tensor of
`model.onnx.data` (or its transpose) points into that file, so a client downloads the weights
once. Whatever is not found there stays inside `model.train.onnx`; the export reports its size.
The graph is described by the manifest's `onnx_train` block and listed in `files` with role
`onnx-train`, which clients fetch only when they train.

    python -m loraxs.export_train_step --dir .cache/models/tiny-llama --batch 2 --seq 32
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

TRAIN_ONNX_FILE = "model.train.onnx"
INPUT_NAMES = ["input_ids", "attention_mask", "labels", "R"]
OUTPUT_NAMES = ["loss", "grad_R"]
IGNORE_INDEX = -100  # labels that do not count (padding), as in PyTorch's cross-entropy
DEFAULT_BATCH, DEFAULT_SEQ = 1, 128  # one 128-token block per run: ~0.5 GB peak for SmolLM2 on CPU
SHARE_MIN_BYTES = 1024  # smaller tensors stay inline: not worth an external reference
# fp32 graph vs fp32 eager autograd: observed ~1e-6 relative; 1e-3 still catches wiring bugs.
CHECK_LOSS_TOLERANCE = 1e-4  # relative error of the loss
CHECK_GRAD_TOLERANCE = 1e-3  # max |error| of dL/dR relative to max |dL/dR|
CHECK_R_STD = 0.05  # a non-trivial R: the gradient then depends on R itself


def log_default(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# The loss graph


class StepLoss(nn.Module):
    """Mean next-token cross-entropy of a LoRA-XS decoder given R, in WebGPU-friendly ops."""

    def __init__(self, model: nn.Module, source):
        super().__init__()
        self.model = model
        self.source = source
        self.tied = bool(getattr(model.config, "tie_word_embeddings", False)) and (
            model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
        )

    def forward(self, input_ids, attention_mask, labels, R):
        self.source.set(R)
        try:
            T = input_ids.shape[1]
            maskf = attention_mask.to(torch.float32)  # [B, T]
            causal = torch.ones(T, T, dtype=torch.float32).tril()  # [T, T]
            keep = causal[None, None, :, :] * maskf[:, None, None, :]  # [B, 1, T, T]
            additive = (1.0 - keep) * torch.finfo(torch.float32).min
            h = self.model.model(input_ids=input_ids, attention_mask=additive, use_cache=False).last_hidden_state
            w = self.model.model.embed_tokens.weight if self.tied else self.model.lm_head.weight
            logits = h[:, :-1, :] @ w.t()  # [B, T-1, V]
            target = labels[:, 1:]
            valid = (target >= 0).to(torch.float32)  # [B, T-1]
            safe = target.clamp_min(0)
            V = logits.shape[-1]
            onehot = (safe.unsqueeze(-1) == torch.arange(V)).to(torch.float32)  # no Gather/Scatter
            z = logits - logits.max(dim=-1, keepdim=True).values.detach()  # exact: the shift cancels
            nll = torch.log(torch.exp(z).sum(-1)) - (z * onehot).sum(-1)
            return (nll * valid).sum() / valid.sum().clamp_min(1.0)
        finally:
            self.source.set(None)


def reference_loss_grad(model: nn.Module, source, ids, mask, labels, R) -> tuple[float, torch.Tensor]:
    """PyTorch autograd through the model's own forward and cross-entropy (independent of StepLoss)."""
    import torch.nn.functional as F

    Rv = R.detach().clone().requires_grad_(True)
    source.set(Rv)
    try:
        with torch.enable_grad():
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            V = logits.shape[-1]
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
            (g,) = torch.autograd.grad(loss, [Rv])
    finally:
        source.set(None)
    return float(loss.detach()), g.detach()


# ---------------------------------------------------------------------------------------------
# Export


def _slice_backward_pad(grad_output, input_sizes, dim, start, end, step):
    """aten.slice_backward as a zero Pad (no ScatterND) when step == 1."""
    nd = len(input_sizes)
    dim = dim % nd
    size = input_sizes[dim]
    if step != 1:
        return torch.ops.aten.slice_scatter(grad_output.new_zeros(input_sizes), grad_output, dim, start, end, step)
    start = 0 if start is None else (start + size if start < 0 else start)
    end = size if end is None else (end + size if end < 0 else end)
    start = max(0, min(start, size))
    end = max(start, min(end, size))
    pads = [0, 0] * (nd - 1 - dim) + [start, size - end]
    return torch.constant_pad_nd(grad_output, pads, 0.0)


def _decompositions():
    from torch._decomp import core_aten_decompositions

    table = dict(core_aten_decompositions())
    table[torch.ops.aten.slice_backward.default] = _slice_backward_pad
    return table


class _StepGraph(nn.Module):
    """Holds the frozen weights as buffers and calls the traced step graph."""

    def __init__(self, gm, names: list[str], weights: list[torch.Tensor]):
        super().__init__()
        self.gm = gm
        self.slots = []
        for i, (n, w) in enumerate(zip(names, weights)):
            slot = f"w{i}_" + n.replace(".", "_")
            self.register_buffer(slot, w.detach())
            self.slots.append(slot)

    def forward(self, input_ids, attention_mask, labels, R):
        loss, grad = self.gm(*[getattr(self, s) for s in self.slots], input_ids, attention_mask, labels, R)
        return loss, grad


def example_batch(vocab: int, batch: int, seq: int, modules: int, rank: int, seed: int, pad: int = 0):
    """Random ids; the last row's final `pad` positions are padding (mask 0, label -100)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    if pad:
        mask[-1, seq - pad :] = 0
        ids[-1, seq - pad :] = 0
    labels = torch.where(mask > 0, ids, torch.full_like(ids, IGNORE_INDEX))
    R = torch.randn(modules, rank, rank, generator=g) * CHECK_R_STD
    return ids, mask, labels, R


def trace_step(loss_module: StepLoss, args):
    from torch.fx.experimental.proxy_tensor import make_fx

    named = list(loss_module.named_parameters()) + list(loss_module.named_buffers())
    names = [n for n, _ in named]
    weights = [t for _, t in named]
    nw = len(names)

    def step(*flat):
        ws = list(flat[:nw])
        ids, mask, labels, R_in = flat[nw:]
        with torch.enable_grad():
            R = R_in.detach().requires_grad_(True)
            loss = torch.func.functional_call(loss_module, dict(zip(names, ws)), (ids, mask, labels, R))
            (g,) = torch.autograd.grad(loss, [R])
        return loss.detach(), g

    gm = make_fx(step, tracing_mode="fake", decomposition_table=_decompositions(), _allow_non_fake_inputs=True)(
        *weights, *args
    )
    return _StepGraph(gm, names, weights)


def _external_index(onnx_path: Path, data_name: str) -> dict[tuple[str, bytes], tuple[int, int]]:
    """(dtype, sha256 of bytes) -> (offset, length) of every tensor stored in the data file."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    data = np.memmap(onnx_path.parent / data_name, dtype=np.uint8, mode="r")
    index = {}
    for t in m.graph.initializer:
        info = {kv.key: kv.value for kv in t.external_data}
        if info.get("location") != data_name:
            continue
        off, length = int(info.get("offset", 0)), int(info["length"])
        digest = hashlib.sha256(data[off : off + length].tobytes()).digest()
        index[(t.data_type, digest)] = (off, length)
    return index


def share_weights(proto, index, data_name: str) -> dict:
    """Points initializers at the inference graph's data file where their bytes (or their
    transpose's) are stored there; returns what was shared and what stayed inline."""
    import onnx
    from onnx import helper, numpy_helper

    shared = transposed = 0
    shared_bytes = inline_bytes = 0
    new_nodes = []
    for t in list(proto.graph.initializer):
        arr = numpy_helper.to_array(t)
        raw = arr.tobytes()
        if len(raw) < SHARE_MIN_BYTES:
            inline_bytes += len(raw)
            continue
        hit = index.get((t.data_type, hashlib.sha256(raw).digest()))
        name = t.name
        if hit is None and arr.ndim == 2:
            hit_t = index.get((t.data_type, hashlib.sha256(np.ascontiguousarray(arr.T).tobytes()).digest()))
            if hit_t is not None:
                # The data file stores Wᵀ: read it under a new name and transpose in the graph.
                t.name = name + "__stored_T"
                t.dims[:] = [arr.shape[1], arr.shape[0]]
                new_nodes.append(helper.make_node("Transpose", [t.name], [name], perm=[1, 0], name=name + "__T"))
                hit = hit_t
                transposed += 1
        if hit is None:
            inline_bytes += len(raw)
            continue
        off, length = hit
        t.ClearField("raw_data")
        for field in ("float_data", "int32_data", "int64_data", "double_data"):
            t.ClearField(field)
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        for k, v in (("location", data_name), ("offset", str(off)), ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = k, v
        shared += 1
        shared_bytes += length
    for n in reversed(new_nodes):
        proto.graph.node.insert(0, n)
    return {"shared": shared, "transposed": transposed, "shared_bytes": shared_bytes, "inline_bytes": inline_bytes}


def export_train_step(model: nn.Module, source, out_dir: str | Path, batch: int = DEFAULT_BATCH,
                      seq: int = DEFAULT_SEQ, data_file: str = "model.onnx.data",
                      onnx_file: str = "model.onnx", log=log_default) -> dict:
    """Writes out_dir/model.train.onnx (weights shared with out_dir/model.onnx.data); returns its info."""
    import onnx

    out_dir = Path(out_dir)
    c = model.config
    if batch < 1 or seq < 2:
        raise ValueError(f"train step shape [batch {batch}, seq {seq}]: batch must be >= 1 and seq >= 2")
    lm = StepLoss(model, source).eval()
    args = example_batch(c.vocab_size, batch, seq, source.modules, source.rank, seed=0, pad=min(3, seq - 2))
    t0 = time.perf_counter()
    log(f"train-step: tracing loss and dL/dR for [{batch}, {seq}] ({c.num_hidden_layers} layers, {source.modules} modules)")
    wrap = trace_step(lm, args).eval()
    t_trace = time.perf_counter() - t0
    program = torch.onnx.export(wrap, args, dynamo=True, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                                optimize=False, verbose=False)
    proto = program.model_proto
    t_export = time.perf_counter() - t0
    sharing = {"shared": 0, "transposed": 0, "shared_bytes": 0, "inline_bytes": None}
    if (out_dir / onnx_file).is_file() and (out_dir / data_file).is_file():
        sharing = share_weights(proto, _external_index(out_dir / onnx_file, data_file), data_file)
    path = out_dir / TRAIN_ONNX_FILE
    onnx.save_model(proto, str(path))
    seconds = time.perf_counter() - t0
    ops: dict[str, int] = {}
    for n in proto.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    info = {
        "file": TRAIN_ONNX_FILE,
        "data_file": data_file if sharing["shared"] else None,
        "inputs": INPUT_NAMES,
        "outputs": OUTPUT_NAMES,
        "shapes": {"batch": batch, "seq": seq},
        "ignore_index": IGNORE_INDEX,
        "opset": int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))),
        "nodes": len(proto.graph.node),
        "graph_bytes": path.stat().st_size,
        "sharing": sharing,
        "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
        "seconds": {"trace": round(t_trace, 2), "export": round(t_export - t_trace, 2), "total": round(seconds, 2)},
    }
    log(f"train-step: {path} {info['graph_bytes'] / 1e6:.1f} MB, {info['nodes']} nodes in {seconds:.1f} s; "
        f"{sharing['shared']} initializers ({sharing['shared_bytes'] / 1e6:.1f} MB) read from {data_file}, "
        f"{(sharing['inline_bytes'] or 0) / 1e6:.2f} MB inline")
    return info


# ---------------------------------------------------------------------------------------------
# Check: onnxruntime (CPU) against PyTorch autograd


def verify_train_step(model: nn.Module, source, out_dir: str | Path, info: dict, seed: int = 1,
                      log=log_default) -> dict:
    """Runs the step graph and PyTorch autograd on a fresh padded batch with a non-zero R."""
    import onnxruntime as ort

    out_dir = Path(out_dir)
    B, T = info["shapes"]["batch"], info["shapes"]["seq"]
    ids, mask, labels, R = example_batch(model.config.vocab_size, B, T, source.modules, source.rank, seed,
                                         pad=min(5, T - 2))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(out_dir / info["file"]), opts, providers=["CPUExecutionProvider"])
    loss_o, grad_o = sess.run(OUTPUT_NAMES, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                             "labels": labels.numpy(), "R": R.numpy()})
    loss_r, grad_r = reference_loss_grad(model, source, ids, mask, labels, R)
    loss_err = abs(float(loss_o) - loss_r) / max(abs(loss_r), 1e-12)
    gmax = float(grad_r.abs().max())
    grad_abs = float(np.abs(grad_o - grad_r.numpy()).max())
    grad_err = grad_abs / max(gmax, 1e-30)
    check = {"runtime": "onnxruntime-cpu", "reference": "pytorch-autograd", "loss": loss_r,
             "loss_rel_error": loss_err, "grad_max_abs_error": grad_abs, "grad_rel_error": grad_err,
             "grad_abs_max": gmax, "tolerance": {"loss": CHECK_LOSS_TOLERANCE, "grad": CHECK_GRAD_TOLERANCE}}
    log(f"train-step check: loss {loss_r:.6f} rel. error {loss_err:.1e}; dL/dR max abs error {grad_abs:.1e} "
        f"({grad_err:.1e} of max |g| {gmax:.1e})")
    if not np.isfinite(grad_o).all() or loss_err > CHECK_LOSS_TOLERANCE or grad_err > CHECK_GRAD_TOLERANCE:
        raise RuntimeError(f"train-step check failed: {check}")
    if gmax == 0.0:
        raise RuntimeError("train-step check is vacuous: dL/dR is all zeros")
    return check


def train_block(info: dict, check: dict | None) -> dict:
    """The manifest's `onnx_train` block (docs/manifest.md) for an exported step graph."""
    return {k: info[k] for k in ("file", "data_file", "opset", "inputs", "outputs", "shapes", "ignore_index")} | {
        "check": check or None}


def add_to_manifest(out_dir: str | Path, info: dict, check: dict | None) -> dict:
    """Adds `onnx_train` and the step graph's `files` entry (role onnx-train) to out_dir/manifest.json;
    validates and rewrites it. Returns the manifest as written."""
    from .lora_xs import file_digest
    from .manifest import load_manifest, write_manifest

    out_dir = Path(out_dir)
    m = load_manifest(out_dir / "manifest.json").to_dict()
    entry = {"name": info["file"], "role": "onnx-train", "sha256": file_digest(out_dir / info["file"]),
             "bytes": (out_dir / info["file"]).stat().st_size}
    m["files"] = [f for f in m["files"] if f["name"] != info["file"]] + [entry]
    m["onnx_train"] = train_block(info, check)
    return write_manifest(out_dir / "manifest.json", m).to_dict()


TRAIN_REFERENCE_FILE = "train-reference.json"
REFERENCE_STEPS, REFERENCE_LR, REFERENCE_WEIGHT_DECAY = 20, 0.01, 0.01


def write_train_reference(model: nn.Module, source, out_dir: str | Path, info: dict, seed: int = 2) -> Path:
    """Fixtures for the client tests: one padded batch, R, PyTorch's loss and dL/dR there, and
    20 steps of torch.optim.AdamW (constant lr, no clipping) on that batch from R."""
    B, T = info["shapes"]["batch"], info["shapes"]["seq"]
    ids, mask, labels, R = example_batch(model.config.vocab_size, B, T, source.modules, source.rank, seed,
                                         pad=min(4, T - 2))
    loss, grad = reference_loss_grad(model, source, ids, mask, labels, R)
    P = nn.Parameter(R.clone())
    opt = torch.optim.AdamW([P], lr=REFERENCE_LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=REFERENCE_WEIGHT_DECAY)
    losses = []
    for _ in range(REFERENCE_STEPS):
        l, g = reference_loss_grad(model, source, ids, mask, labels, P.detach())
        losses.append(l)
        P.grad = g
        opt.step()
    ref = {
        "model": None, "shapes": info["shapes"],
        "input_ids": ids.tolist(), "attention_mask": mask.tolist(), "labels": labels.tolist(),
        "R": R.reshape(-1).tolist(), "loss": loss, "grad": grad.reshape(-1).tolist(),
        "adamw": {"steps": REFERENCE_STEPS, "lr": REFERENCE_LR, "weight_decay": REFERENCE_WEIGHT_DECAY,
                  "betas": [0.9, 0.999], "eps": 1e-8, "losses": losses, "R": P.detach().reshape(-1).tolist()},
    }
    path = Path(out_dir) / TRAIN_REFERENCE_FILE
    path.write_text(json.dumps(ref) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    from .models import load_prepared

    p = argparse.ArgumentParser(prog="export_train_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True, help="a prepared decoder folder (manifest.json, factors, model.onnx)")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    p.add_argument("--seq", type=int, default=DEFAULT_SEQ)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs PyTorch check")
    p.add_argument("--reference", action="store_true", help=f"also write {TRAIN_REFERENCE_FILE} (client test fixtures)")
    a = p.parse_args(argv)
    base, _factors, source, manifest = load_prepared(a.dir)
    if manifest["family"] != "decoder":
        raise SystemExit(f"{a.dir}: family is {manifest['family']!r}; the train step is for decoders")
    info = export_train_step(base.model, source, a.dir, a.batch, a.seq)
    check = None if a.no_check else verify_train_step(base.model, source, a.dir, info)
    add_to_manifest(a.dir, info, check)
    log_default(f"train-step: added onnx_train [{a.batch}, {a.seq}] and {info['file']} to {a.dir}/manifest.json")
    if a.reference:
        log_default(f"train-step: wrote {write_train_reference(base.model, source, a.dir, info)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
