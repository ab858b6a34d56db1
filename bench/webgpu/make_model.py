"""A SmolLM2-135M-shaped decoder with random weights, through the project's own prepare/export.

    PYTHONPATH=scripts .venv/bin/python bench/webgpu/make_model.py build --out DIR
    python3 bench/webgpu/make_model.py unpack --dir DIR     (on the GPU machine)

`build` (here, CPU): SmolLM2-135M-Instruct's configuration (30 layers, 576 wide, 9/3 heads,
vocab 49152, tied embedding) with seeded random weights and SmolLM2's real tokenizer, run through
`loraxs.prepare` (randomized SVD of q_proj/v_proj at r = 16, ONNX export, onnxruntime-vs-PyTorch
check, reference fixtures, manifest). Then it writes
- `plain.onnx`: the same graph with the LoRA-XS branch cut out and no `R` input (the plain base
  model, what transformers.js runs), reading the same `model.onnx.data`;
- `recipe.json` + `extra.bin`: how to rebuild `model.onnx.data` (545 MB, too big to carry) from
  the seeded model: each external tensor is a parameter or buffer (possibly transposed) of the
  seeded PyTorch model, or a few small constants stored in `extra.bin`; sha256 per tensor.

`train` (here, CPU, ~5 min): the training step `model.train.onnx` for that model through
`loraxs.export_train_step` (1 x 128 tokens by default, weights shared with `model.onnx.data`, so
the recipe rebuilds them too), checked against PyTorch autograd and added to the manifest.

`unpack` (GPU machine, which has the same torch/transformers): rebuilds the seeded model, injects
the carried factors, writes `model.onnx.data` from the recipe and checks every tensor's sha256
and the whole file's digest against the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

MODEL_ID = "smollm2-random"
SEED = 0
# SmolLM2-135M-Instruct's config.json (HuggingFaceTB), the shape the product ships.
SMOLLM2_CONFIG = dict(
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    vocab_size=49152,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
    initializer_range=0.02,
    hidden_act="silu",
)
DATA_FILE = "model.onnx.data"


def random_smollm2(seed: int = SEED):
    """The seeded random model: same seed and same torch/transformers give the same bits."""
    from loraxs.models import _decoder_from_config
    from transformers import LlamaConfig

    # Built the way load_base builds its random presets: eager attention, eval mode, frozen weights.
    torch.manual_seed(seed)
    return _decoder_from_config(LlamaConfig(**SMOLLM2_CONFIG), torch.float32)


def base_model(seed: int = SEED):
    from loraxs.models import BaseModel, _smollm2_tokenizer, model_config

    model = random_smollm2(seed)
    tok = _smollm2_tokenizer()
    source = {"kind": "random", "preset": MODEL_ID, "seed": seed, "tokenizer": "smollm2-135m", "revision": None}
    return BaseModel(MODEL_ID, model, tok, "decoder", "LlamaForCausalLM", source, model_config(model, "decoder", tok))


def build(out: Path) -> None:
    from loraxs import prepare

    prepare.load_base = lambda spec, seed=0, dtype=torch.float32: base_model(seed)  # noqa: ARG005
    # The traced fp32 graph only: the fused 4-bit graphs are built from the seeded weights where they
    # run (`client`), since their 130 MB of codes do not compress for the trip.
    prepare.prepare(prepare.parse_args(["--source", MODEL_ID, "--id", MODEL_ID, "--out", str(out), "--device", "cpu",
                                        "--no-client-graph"]))
    write_plain(out)
    write_merged(out)
    write_recipe(out)
    base = base_model()
    base.model.config.save_pretrained(str(out / "hf"))  # config.json for transformers.js


def train_step(out: Path, batch: int = 1, seq: int = 128) -> None:
    """model.train.onnx for the seeded model (export_train_step reads the manifest's source)."""
    from loraxs import export_train_step, models

    models.load_source = lambda source, model_id, dtype=torch.float32: base_model(int(source.get("seed", SEED)))  # noqa: ARG005
    export_train_step.main(["--dir", str(out), "--batch", str(batch), "--seq", str(seq)])


def write_plain(out: Path) -> None:
    """plain.onnx: each module's Add(base, branch) becomes its base MatMul; R and the branch go."""
    import onnx

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from merge_graph import find_branches

    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    g = m.graph
    branches = find_branches(g)
    removed = {id(n) for b in branches for n in b["remove"]}
    rename = {b["add_out"]: b["base_out"] for b in branches}
    nodes = [n for n in g.node if id(n) not in removed]
    for n in nodes:
        for k, i in enumerate(n.input):
            n.input[k] = rename.get(i, i)
    if any("R" in n.input for n in nodes):
        raise RuntimeError("plain graph still reads R")
    del g.node[:]
    g.node.extend(nodes)
    inputs = [i for i in g.input if i.name != "R"]
    # transformers.js sizes its empty cache from these dimension names (Optimum's convention).
    for i in inputs:
        if i.name.startswith("past_key_values."):
            dims = i.type.tensor_type.shape.dim
            dims[0].dim_param = "batch_size"
            dims[2].dim_param = "past_sequence_length"
    del g.input[:]
    g.input.extend(inputs)
    used = {i for n in nodes for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    onnx.save(m, str(out / "plain.onnx"))
    print(f"plain.onnx: {len(nodes)} nodes ({len(branches)} branches cut)")


def write_merged(out: Path) -> None:
    """merged.onnx / merged-gather.onnx (merge_graph.py), and merged/: a model folder whose
    manifest names merged.onnx as its model.onnx, for the client (links to the shared files)."""
    import shutil

    import onnx

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from merge_graph import merge

    for name, per_layer in (("merged.onnx", False), ("merged-gather.onnx", True)):
        m = merge(onnx.load(str(out / "model.onnx"), load_external_data=False), per_layer)
        onnx.save(m, str(out / name))
    folder = out / "merged"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    manifest = json.loads((out / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["name"] == "model.onnx":
            shutil.copyfile(out / "merged.onnx", folder / "model.onnx")
            f["sha256"] = "sha256:" + hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
            f["bytes"] = (folder / "model.onnx").stat().st_size
        else:
            (folder / f["name"]).symlink_to(Path("..") / f["name"])
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print("merged.onnx, merged-gather.onnx, merged/ written")


def write_client(out: Path) -> None:
    """q4/: a model folder whose manifest lists the WebGPU client graph `q4w` (the graph SmolLM2 ships
    for webgpu: 4-bit MatMulNBits, fused norms and projections, GroupQueryAttention) built from
    the seeded weights rounded as the GGUF rounds them, then the traced fp32 graph; plus
    `model.q4w-plain.onnx`, the same graph without the branch and R (the plain base model, what
    transformers.js runs). Runs where the benchmark runs (numpy and onnx; ~1 min)."""
    import shutil

    from loraxs.export_client import WEBGPU_DEVICES, export_variant, graph_file_entries, quantize, variant_entry
    from loraxs.gguf_llama import from_state_dict
    from loraxs.manifest import write_manifest

    t0 = time.perf_counter()
    folder = out / "q4"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    manifest = json.loads((out / "manifest.json").read_text())
    for f in manifest["files"]:
        (folder / f["name"]).symlink_to(Path("..") / f["name"])
    model = random_smollm2()
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    weights = quantize(from_state_dict(state, model.config.to_dict()))
    # q4w as a model without local layers ships it (export_client: GroupQueryAttention, prefill_chunk 31).
    entry, _ = export_variant(folder, manifest, weights, "q4w", True, devices=WEBGPU_DEVICES, attention="webgpu")
    plain, _ = export_variant(folder, manifest, weights, "q4w-plain", False, devices=WEBGPU_DEVICES, attention="webgpu")
    # The previous WebGPU graph (attention in plain ops; what Gemma 3 still ships): timed by the bare loop.
    export_variant(folder, manifest, weights, "q4wp", True, devices=WEBGPU_DEVICES, attention="plain")
    # The previous q4w: each Q4_1 offset added by two small matmuls and an Add (not doubled); timed by the bare loop.
    export_variant(folder, manifest, weights, "q4wa", True, devices=WEBGPU_DEVICES, attention="gqa", doubled=False)
    # The fixed-cache graph (plain-ops attention, one token a run): timed by capture.mjs, not listed here.
    export_variant(folder, manifest, weights, "q4ws", True, devices=WEBGPU_DEVICES, attention="static")
    onnx_block = manifest["onnx"]
    traced = variant_entry("fp32", onnx_block["file"], [onnx_block["data_file"]], "F32", "none", onnx_block["opset"],
                           list(manifest["io"]["inputs"]))
    manifest["graphs"] = [entry, traced]
    manifest["files"] += graph_file_entries(folder, [entry["file"], *entry["data_files"]])
    write_manifest(folder / "manifest.json", manifest)
    # transformers.js sizes its empty cache from the inputs' dimension names (Optimum's `batch_size`).
    import onnx

    g = onnx.load(str(folder / plain["file"]), load_external_data=False)
    for v in [*g.graph.input, *g.graph.output]:
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param == "batch":
                d.dim_param = "batch_size"
    onnx.save(g, str(folder / plain["file"]))
    print(f"q4/: q4w and q4w-plain written in {time.perf_counter() - t0:.1f} s")


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _tensors(out: Path):
    """name -> fp32 tensor for every parameter and buffer of the seeded model with the factors injected."""
    from loraxs.lora_xs import inject, load_factors

    model = random_smollm2()
    inject(model, load_factors(out / "factors.safetensors"))
    named = dict(model.named_parameters())
    named.update(dict(model.named_buffers()))
    return {k: v.detach().to(torch.float32).contiguous() for k, v in named.items()}


def _bytes(t: torch.Tensor, transpose: bool) -> bytes:
    x = t.t().contiguous() if transpose else t
    return x.numpy().tobytes()


def _external(out: Path):
    import onnx

    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    rows = []
    for t in m.graph.initializer:
        kv = {e.key: e.value for e in t.external_data}
        if kv:
            rows.append({"name": t.name, "offset": int(kv.get("offset", 0)), "length": int(kv["length"])})
    return rows


def write_recipe(out: Path) -> None:
    tensors = _tensors(out)
    by_hash: dict[str, tuple[str, bool]] = {}
    for name, t in tensors.items():
        by_hash.setdefault(_sha(_bytes(t, False)), (name, False))
        if t.dim() == 2:
            by_hash.setdefault(_sha(_bytes(t, True)), (name, True))
    data = (out / DATA_FILE).read_bytes()
    extra = bytearray()
    rows = []
    for r in _external(out):
        chunk = data[r["offset"] : r["offset"] + r["length"]]
        h = _sha(chunk)
        if h in by_hash:
            src, tr = by_hash[h]
            rows.append({**r, "sha256": h, "source": src, "transpose": tr})
        else:
            rows.append({**r, "sha256": h, "extra_offset": len(extra)})
            extra += chunk
    recipe = {"data_file": DATA_FILE, "bytes": len(data), "sha256": _sha(data), "seed": SEED, "tensors": rows}
    (out / "recipe.json").write_text(json.dumps(recipe) + "\n")
    (out / "extra.bin").write_bytes(bytes(extra))
    print(f"recipe: {len(rows)} tensors, {sum('source' in r for r in rows)} from the seeded model, "
          f"{len(extra)} bytes of constants in extra.bin")


def unpack(folder: Path) -> None:
    t0 = time.perf_counter()
    recipe = json.loads((folder / "recipe.json").read_text())
    extra = (folder / "extra.bin").read_bytes()
    tensors = _tensors(folder)
    buf = bytearray(recipe["bytes"])
    for r in recipe["tensors"]:
        if "source" in r:
            chunk = _bytes(tensors[r["source"]], r["transpose"])
        else:
            chunk = extra[r["extra_offset"] : r["extra_offset"] + r["length"]]
        if len(chunk) != r["length"] or _sha(chunk) != r["sha256"]:
            raise RuntimeError(f"tensor {r['name']} ({r.get('source', 'extra')}) does not rebuild bit for bit")
        buf[r["offset"] : r["offset"] + r["length"]] = chunk
    if _sha(bytes(buf)) != recipe["sha256"]:
        raise RuntimeError("model.onnx.data digest differs after the rebuild")
    (folder / DATA_FILE).write_bytes(buf)
    print(f"unpack: {DATA_FILE} ({len(buf)} bytes, sha256 {recipe['sha256'][:12]}…) rebuilt in {time.perf_counter() - t0:.1f} s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["build", "train", "unpack", "client", "plain", "merged", "recipe"])
    p.add_argument("--out", "--dir", dest="dir", required=True)
    p.add_argument("--train-shape", default="1x128", help="train: batch x seq of the step graph")
    a = p.parse_args()
    d = Path(a.dir)
    if a.command == "train":
        batch, seq = (int(x) for x in a.train_shape.split("x"))
        train_step(d, batch, seq)
        return 0
    steps = {"build": build, "unpack": unpack, "client": write_client, "plain": write_plain, "merged": write_merged, "recipe": write_recipe}
    steps[a.command](d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
