"""The training-step graph (loss, dL/dR) of a LoRA-XS decoder: onnxruntime against PyTorch
autograd, weights shared with the inference graph's data file, WebGPU-friendly op set."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from loraxs import export_onnx
from loraxs import export_train_step as ets
from loraxs.lora_xs import find_target_modules, inject
from loraxs.models import load_base
from loraxs.svd import SvdOptions, compute_factors

BATCH, SEQ = 2, 16


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-llama-train")
    base = load_base("tiny-llama")
    names = find_target_modules(base.model, "q_proj,v_proj")
    factors, _ = compute_factors(base.model, names, 8, SvdOptions(), "tiny-llama", log=lambda _: None)
    source = inject(base.model, factors)
    export_onnx.export(base.model, source, "decoder", out, log=lambda _: None)
    info = ets.export_train_step(base.model, source, out, BATCH, SEQ, log=lambda _: None)
    return base, source, out, info


def test_loss_and_gradient_match_pytorch_autograd(built):
    base, source, out, info = built
    check = ets.verify_train_step(base.model, source, out, info, seed=3, log=lambda _: None)
    assert check["loss_rel_error"] < ets.CHECK_LOSS_TOLERANCE
    assert check["grad_rel_error"] < ets.CHECK_GRAD_TOLERANCE
    assert check["grad_abs_max"] > 0


def test_gradient_depends_on_R_and_padding_is_ignored(built):
    import onnxruntime as ort

    base, source, out, info = built
    sess = ort.InferenceSession(str(out / info["file"]), providers=["CPUExecutionProvider"])
    ids, mask, labels, R = ets.example_batch(base.config["vocab_size"], BATCH, SEQ, source.modules, source.rank, 5, pad=4)
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "labels": labels.numpy(), "R": R.numpy()}
    loss, grad = sess.run(None, feeds)
    _, grad0 = sess.run(None, {**feeds, "R": np.zeros_like(feeds["R"])})
    assert np.abs(grad - grad0).max() > 1e-3 * np.abs(grad).max()
    # Changing the ids under padding (mask 0, label -100) changes nothing.
    ids2 = ids.clone()
    ids2[-1, SEQ - 4 :] = 7
    loss2, grad2 = sess.run(None, {**feeds, "input_ids": ids2.numpy()})
    assert abs(float(loss2) - float(loss)) < 1e-6 and np.abs(grad2 - grad).max() < 1e-6
    ref_loss, ref_grad = ets.reference_loss_grad(base.model, source, ids, mask, labels, R)
    assert abs(float(loss) - ref_loss) / ref_loss < 1e-5
    assert np.abs(grad - ref_grad.numpy()).max() / ref_grad.abs().max().item() < 1e-4


def test_weights_come_from_the_inference_data_file(built):
    _, _, out, info = built
    sharing = info["sharing"]
    assert sharing["shared"] > 0 and sharing["inline_bytes"] < 64 * 1024, sharing
    data_bytes = (out / export_onnx.DATA_FILE).stat().st_size
    assert sharing["shared_bytes"] > 0.9 * data_bytes
    m = onnx.load(str(out / info["file"]), load_external_data=False)
    locations = {kv.value for t in m.graph.initializer for kv in t.external_data if kv.key == "location"}
    assert locations == {export_onnx.DATA_FILE}
    assert (out / info["file"]).stat().st_size < data_bytes / 4


def test_graph_avoids_ops_webgpu_lacks(built):
    _, _, _, info = built
    for op in ("LogSoftmax", "And", "ScatterND", "ScatterElements"):
        assert op not in info["ops"], (op, info["ops"])
    m = onnx.load(str(built[2] / info["file"]), load_external_data=False)
    assert [i.name for i in m.graph.input] == ets.INPUT_NAMES
    assert [o.name for o in m.graph.output] == ets.OUTPUT_NAMES


def test_manifest_gets_onnx_train_and_the_graph_file(built, tmp_path):
    import shutil
    from pathlib import Path

    from loraxs.manifest import load_manifest, write_manifest

    base, source, out, info = built
    fixture = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "manifests" / "decoder.json").read_text())
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(out / info["file"], folder / info["file"])
    write_manifest(folder / "manifest.json", fixture)
    check = {"runtime": "onnxruntime-cpu", "reference": "pytorch-autograd", "loss": 4.5, "loss_rel_error": 0.0,
             "grad_max_abs_error": 0.0, "grad_rel_error": 0.0, "grad_abs_max": 1.0,
             "tolerance": {"loss": ets.CHECK_LOSS_TOLERANCE, "grad": ets.CHECK_GRAD_TOLERANCE}}
    ets.add_to_manifest(folder, info, check)
    ets.add_to_manifest(folder, info, check)  # again: one entry, not two
    m = load_manifest(folder / "manifest.json")
    assert m.onnx_train["shapes"] == {"batch": BATCH, "seq": SEQ}
    assert m.onnx_train["data_file"] == export_onnx.DATA_FILE
    assert m.onnx_train["inputs"] == ets.INPUT_NAMES and m.onnx_train["check"] == check
    entries = [f for f in m.files if f["role"] == "onnx-train"]
    assert [f["name"] for f in entries] == [info["file"]]
    assert entries[0]["bytes"] == (out / info["file"]).stat().st_size and entries[0]["sha256"].startswith("sha256:")
    assert not (folder / "train.json").exists()


def test_bad_shape_is_refused_with_the_value(built):
    base, source, out, _ = built
    with pytest.raises(ValueError, match=r"seq 1"):
        ets.export_train_step(base.model, source, out, 1, 1, log=lambda _: None)


def test_step_loss_equals_cross_entropy():
    base = load_base("tiny-llama")
    names = find_target_modules(base.model, "q_proj,v_proj")
    factors, _ = compute_factors(base.model, names, 4, SvdOptions(), "tiny-llama", log=lambda _: None)
    source = inject(base.model, factors)
    ids, mask, labels, R = ets.example_batch(base.config["vocab_size"], 2, 9, source.modules, source.rank, 1, pad=3)
    with torch.no_grad():
        mine = float(ets.StepLoss(base.model, source)(ids, mask, labels, R))
    ref, _ = ets.reference_loss_grad(base.model, source, ids, mask, labels, R)
    assert abs(mine - ref) < 1e-5 * ref
