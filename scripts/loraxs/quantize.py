"""Weight-only int4/int8 variant of a prepared graph (MatMulNBits), for the browser.

    python -m loraxs.quantize models/smollm2-135m --bits 4
    npm run prepare-model ...  then  node scripts/py.mjs -m loraxs.quantize /tmp/tiny-llama

Writes `model.q<bits>.onnx` + `model.q<bits>.onnx.data` beside `model.onnx` and reports the
error against the fp32 graph on the reference fixtures' inputs. Only the base model's large
MatMul weights are quantized (block-wise with a zero point, per `--block-size`); the LoRA-XS branch
(`down`, `up` and the R input) and the tied embedding/output layer stay fp32, so an adapter
means the same thing in both graphs. The manifest (docs/contracts.md) names one graph; this
variant is not listed there yet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

MIN_QUANT_ELEMENTS = 1 << 16  # the LoRA-XS factors (r x in, out x r) and tiny weights stay fp32


def _branch_nodes(model, rank: int, min_elements: int = MIN_QUANT_ELEMENTS) -> list[str]:
    """MatMul nodes to keep fp32: the LoRA-XS branch (a weight with a side of length `rank`: down
    [in, r], up [r, out] once transposed) and weights too small to matter."""
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    exclude = []
    for n in model.graph.node:
        if n.op_type != "MatMul":
            continue
        d = dims.get(n.input[1]) if len(n.input) > 1 else None
        if d is None or len(d) != 2 or min(d) <= rank or d[0] * d[1] < min_elements:
            exclude.append(n.name)
    return exclude


def quantize(folder: str | Path, bits: int = 4, block_size: int = 32, min_elements: int = MIN_QUANT_ELEMENTS,
             symmetric: bool = False, log=print) -> dict:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    folder = Path(folder)
    src = folder / "model.onnx"
    dst = folder / f"model.q{bits}.onnx"
    t0 = time.perf_counter()
    model = onnx.load(str(src))
    rank = json.loads((folder / "manifest.json").read_text())["rank"]
    exclude = _branch_nodes(model, rank, min_elements)
    cfg = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=symmetric, bits=bits)
    q = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=symmetric,
                             nodes_to_exclude=exclude, algo_config=cfg)
    q.process()
    for p in (dst, dst.with_name(dst.name + ".data")):
        if p.exists():
            p.unlink()
    onnx.save_model(q.model.model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=dst.name + ".data", size_threshold=1024)
    seconds = time.perf_counter() - t0
    err = compare(folder, dst)
    quantized = sum(1 for n in q.model.model.graph.node if n.op_type == "MatMulNBits")
    info = {"file": dst.name, "bits": bits, "block_size": block_size, "seconds": seconds, "quantized_nodes": quantized,
            "bytes": dst.stat().st_size + dst.with_name(dst.name + ".data").stat().st_size,
            "fp32_bytes": src.stat().st_size + (folder / "model.onnx.data").stat().st_size, **err}
    log(f"quantize: {dst} int{bits} block {block_size}: {info['bytes'] / 1e6:.1f} MB (fp32 {info['fp32_bytes'] / 1e6:.1f} MB), "
        f"max abs output error vs fp32 (logits or embedding) {err['max_abs_error']:.3e}, greedy first token agrees {err['argmax_agree']}")
    return info


def compare(folder: Path, quantized: Path) -> dict:
    """Last-position outputs of the quantized graph vs the fp32 graph on the reference cases."""
    import onnxruntime as ort
    from safetensors.numpy import load_file

    ref = json.loads((folder / "reference.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    shape = manifest["io"]["R"]["shape"]
    Rs = load_file(str(folder / "reference-R.safetensors"))
    a = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(quantized), providers=["CPUExecutionProvider"])
    worst, agree = 0.0, True
    for case in ref["cases"]:
        R = np.zeros(shape, np.float32) if case["R"] == "zeros" else Rs[case["R"].split("#")[1]]
        ids = np.array(case["input_ids"], np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "R": R}
        if manifest["family"] == "decoder":
            c = manifest["config"]
            feeds["position_ids"] = np.arange(ids.shape[1], dtype=np.int64)[None]
            for i in range(c["num_layers"]):
                empty = np.zeros((1, c["num_kv_heads"], 0, c["head_dim"]), np.float32)
                feeds[f"past_key_values.{i}.key"] = feeds[f"past_key_values.{i}.value"] = empty
            x, y = a.run(["logits"], feeds)[0][:, -1], b.run(["logits"], feeds)[0][:, -1]
            agree = agree and bool((x.argmax(-1) == y.argmax(-1)).all())
        else:
            feeds["token_type_ids"] = np.zeros_like(ids)
            x, y = a.run(["sentence_embedding"], feeds)[0], b.run(["sentence_embedding"], feeds)[0]
        worst = max(worst, float(np.abs(x - y).max()))
    return {"max_abs_error": worst, "argmax_agree": agree}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="quantize", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a prepared model folder (model.onnx, reference.json)")
    p.add_argument("--bits", type=int, choices=(4, 8), default=4)
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--symmetric", action="store_true", help="symmetric blocks (default: scale and zero point, like GGUF Q4_1)")
    args = p.parse_args(argv)
    quantize(args.folder, args.bits, args.block_size, symmetric=args.symmetric)
    return 0


if __name__ == "__main__":
    sys.exit(main())
