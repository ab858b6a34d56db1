"""Rewrite of the decoder graph: fold each run's R into the adapted weights once, up front.

The exported graph computes every adapted module as MatMul(x, Wᵀ) + MatMul(MatMul(MatMul(x, downᵀ),
Gather(R, i)ᵀ), upᵀ): 6 extra kernels per module, 360 for SmolLM2's 60 modules, on every decode
step. On a GPU a decode step is bound by the number of kernel dispatches, not by arithmetic, so
the branch costs about what its kernel count is. This rewrite keeps the graph's inputs and outputs
(R stays the one input, docs/contracts.md) and computes, per group of same-shaped modules,
    W'ᵀ[n] = Wᵀ[n] + downᵀ[n] · Rᵀ[n] · upᵀ[n]     (2 batched MatMuls, 1 Add, over all layers)
then hands layer l its slice (one Split for the group, or one Gather per layer with --gather):
12 kernels per step instead of 360. The stacked Wᵀ, downᵀ and upᵀ are Concats of initializers
that onnxruntime folds into constants when the session is created.

    python bench/webgpu/merge_graph.py IN.onnx OUT.onnx [--gather]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _consts(g: onnx.GraphProto) -> dict[str, np.ndarray]:
    out = {t.name: t for t in g.initializer}
    vals: dict[str, np.ndarray] = {}
    for name, t in out.items():
        if not t.external_data and t.data_type == onnx.TensorProto.INT64:
            vals[name] = numpy_helper.to_array(t)
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    vals[n.output[0]] = numpy_helper.to_array(a.t)
    return vals


def find_branches(g: onnx.GraphProto) -> list[dict]:
    """Each adapted module: R row, input x, downᵀ/upᵀ/Wᵀ initializer names and the nodes involved."""
    producer = {o: n for n in g.node for o in n.output}
    users: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in g.node:
        for i in n.input:
            users[i].append(n)
    inits = {t.name: t for t in g.initializer}
    consts = _consts(g)
    found = []
    for gather in [n for n in g.node if n.op_type == "Gather" and n.input[0] == "R"]:
        idx = int(consts[gather.input[1]].reshape(()))
        (tr,) = users[gather.output[0]]
        (mm_r,) = users[tr.output[0]]
        down_mm = producer[mm_r.input[0]]
        (mm_up,) = users[mm_r.output[0]]
        (add,) = users[mm_up.output[0]]
        base_out = add.input[0] if add.input[1] == mm_up.output[0] else add.input[1]
        base_mm = producer[base_out]
        x, down_t = down_mm.input
        up_t = mm_up.input[1]
        if tr.op_type != "Transpose" or base_mm.op_type != "MatMul" or base_mm.input[0] != x:
            raise RuntimeError(f"unexpected branch shape at R[{idx}] ({gather.name})")
        w_t = base_mm.input[1]
        for name in (down_t, up_t, w_t):
            if name not in inits:
                raise RuntimeError(f"R[{idx}]: {name} is not an initializer")
        shape = tuple(inits[w_t].dims)
        found.append({"idx": idx, "x": x, "down_t": down_t, "up_t": up_t, "w_t": w_t, "shape": shape,
                      "base_mm": base_mm, "remove": [gather, tr, down_mm, mm_r, mm_up, add],
                      "add_out": add.output[0], "base_out": base_out})
    return sorted(found, key=lambda b: b["idx"])


def merge(model: onnx.ModelProto, gather_per_layer: bool = False) -> onnx.ModelProto:
    g = model.graph
    branches = find_branches(g)
    if not branches:
        raise RuntimeError("no LoRA-XS branch (Gather on R) found")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for b in branches:
        groups[b["shape"]].append(b)
    new_nodes: list[onnx.NodeProto] = []
    new_inits = [numpy_helper.from_array(np.array([0], dtype=np.int64), "merge_axes0")]
    rename: dict[str, str] = {}
    removed = set()
    for k, (shape, bs) in enumerate(groups.items()):
        p = f"merge{k}"
        idx = np.array([b["idx"] for b in bs], dtype=np.int64)
        new_inits.append(numpy_helper.from_array(idx, f"{p}_rows"))
        new_nodes += [
            helper.make_node("Gather", ["R", f"{p}_rows"], [f"{p}_R"], axis=0, name=f"{p}_gather_R"),
            helper.make_node("Transpose", [f"{p}_R"], [f"{p}_Rt"], perm=[0, 2, 1], name=f"{p}_Rt"),
        ]
        for what in ("down_t", "up_t", "w_t"):
            names = []
            for j, b in enumerate(bs):
                u = f"{p}_{what}_{j}"
                new_nodes.append(helper.make_node("Unsqueeze", [b[what], "merge_axes0"], [u], name=f"{u}_unsq"))
                names.append(u)
            new_nodes.append(helper.make_node("Concat", names, [f"{p}_{what}"], axis=0, name=f"{p}_{what}_stack"))
        new_nodes += [
            helper.make_node("MatMul", [f"{p}_down_t", f"{p}_Rt"], [f"{p}_dr"], name=f"{p}_dr"),
            helper.make_node("MatMul", [f"{p}_dr", f"{p}_up_t"], [f"{p}_delta"], name=f"{p}_delta"),
            helper.make_node("Add", [f"{p}_w_t", f"{p}_delta"], [f"{p}_w"], name=f"{p}_w"),
        ]
        if gather_per_layer:
            for j, b in enumerate(bs):
                new_inits.append(numpy_helper.from_array(np.array(j, dtype=np.int64), f"{p}_j{j}"))
                new_nodes.append(helper.make_node("Gather", [f"{p}_w", f"{p}_j{j}"], [f"{p}_w{j}"], axis=0,
                                                  name=f"{p}_w{j}"))
        else:
            new_nodes.append(helper.make_node("Split", [f"{p}_w"], [f"{p}_w{j}" for j in range(len(bs))], axis=0,
                                              num_outputs=len(bs), name=f"{p}_split"))
        for j, b in enumerate(bs):
            b["base_mm"].input[1] = f"{p}_w{j}"
            rename[b["add_out"]] = b["base_out"]
            removed.update(id(n) for n in b["remove"])
    kept = [n for n in g.node if id(n) not in removed]
    for n in kept:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
    for o in g.output:
        if o.name in rename:
            raise RuntimeError(f"graph output {o.name} is a branch Add")
    # The new nodes read only R and initializers: put them first, then the rest in order.
    del g.node[:]
    g.node.extend(new_nodes + kept)
    g.initializer.extend(new_inits)
    used = {i for n in g.node for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    return model


def fold_stacks(model: onnx.ModelProto) -> int:
    """Replace each Concat(Unsqueeze(initializer)…) stack by one stacked initializer.

    onnxruntime-web leaves these Concats to run on every step (30 inputs also exceed WebGPU's
    16 storage buffers per shader), so the stacks are computed here, once. Needs the external data
    loaded (onnx.load with load_external_data=True)."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    drop: set[int] = set()
    new = []
    for n in g.node:
        if n.op_type != "Concat" or not n.name.endswith("_stack"):
            continue
        parts = []
        for i in n.input:
            u = producer[i]
            parts.append(numpy_helper.to_array(inits[u.input[0]]))
            drop.add(id(u))
        new.append(numpy_helper.from_array(np.stack(parts), n.output[0]))
        drop.add(id(n))
    nodes = [n for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(new)
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    return len(new)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--gather", action="store_true", help="one Gather per layer instead of one Split per group")
    p.add_argument("--fold", action="store_true",
                   help="store the stacked weights as initializers (reads the external data; writes DST.data)")
    a = p.parse_args()
    m = onnx.load(a.src, load_external_data=a.fold)
    before = len(m.graph.node)
    merge(m, a.gather)
    if a.fold:
        import os

        folded = fold_stacks(m)
        onnx.save_model(m, a.dst, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(a.dst) + ".data", size_threshold=1024)
        print(f"{folded} stacks folded into {a.dst}.data")
    else:
        onnx.save(m, a.dst)
    print(f"{a.dst}: {len(m.graph.node)} nodes (was {before})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
