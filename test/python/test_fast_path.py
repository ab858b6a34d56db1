"""The trainer's fast path computes what the plain path computes (CPU, tiny models)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_train import RANK, VOCAB, cfg, pattern_blocks, tiny_decoder, tiny_encoder

from loraxs import fast_path
from loraxs.data import Blocks, pack_blocks
from loraxs.fused_loss import chunk_nll_and_grad, linear_cross_entropy
from loraxs.lora_xs import adapted_modules
from loraxs.job_io import UserTask
from loraxs.train import MultiUserTrainer


@pytest.mark.parametrize("chunk,compiled", [(1, False), (7, False), (64, False), (None, False), (7, True)])
def test_chunked_linear_cross_entropy_matches_the_plain_loss_and_gradient(chunk, compiled):
    g = torch.Generator().manual_seed(0)
    N, H, V = 37, 16, 50
    hidden = torch.randn(N, H, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64)
    targets = torch.randint(0, V, (N,), generator=g)
    w = torch.rand(N, generator=g, dtype=torch.float64)
    w[::5] = 0  # ignored tokens
    # the compile-friendly chunk (traced here without code generation) must equal the in-place one
    fn = torch.compile(chunk_nll_and_grad, backend="aot_eager") if compiled else None
    loss, nll = linear_cross_entropy(hidden, weight, targets, w, chunk=chunk, chunk_fn=fn)
    (grad,) = torch.autograd.grad(loss * 3.0, hidden)  # the upstream gradient is applied too

    ref_h = hidden.detach().clone().requires_grad_(True)
    ref_nll = F.cross_entropy(ref_h @ weight.T, targets, reduction="none")
    ref_loss = (ref_nll * w).sum()
    (ref_grad,) = torch.autograd.grad(ref_loss * 3.0, ref_h)
    assert nll.dtype == torch.float32
    assert torch.allclose(nll.double(), ref_nll, atol=1e-5)
    assert torch.allclose(loss.double(), ref_loss.float().double(), rtol=1e-5)
    assert torch.allclose(grad, ref_grad, atol=2e-5), (grad - ref_grad).abs().max()  # logits are fp32
    assert grad[::5].abs().max() == 0  # zero-weight tokens send no gradient


def test_chunked_linear_cross_entropy_names_bad_shapes():
    h, W = torch.zeros(4, 8), torch.zeros(10, 8)
    with pytest.raises(ValueError, match=r"hidden \(4, 9\) and weight \(10, 8\)"):
        linear_cross_entropy(torch.zeros(4, 9), W, torch.zeros(4, dtype=torch.long), torch.ones(4))
    with pytest.raises(ValueError, match=r"targets \(3,\)"):
        linear_cross_entropy(h, W, torch.zeros(3, dtype=torch.long), torch.ones(4))


@pytest.mark.parametrize("per_example", [False, True])
def test_fused_branch_equals_the_three_products(per_example):
    model, source, _ = tiny_decoder()
    g = torch.Generator().manual_seed(3)
    B, T = 3, 10
    ids = torch.randint(0, VOCAB, (B, T), generator=g)
    R = torch.randn((B,) * per_example + (source.modules, RANK, RANK), generator=g) * 0.3
    source.set(R)
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        source.fused = True
        fused = model(input_ids=ids).logits
    source.fused = False
    source.set(None)
    with torch.no_grad():
        base = model(input_ids=ids).logits
    assert (plain - base).abs().max() > 1e-2  # R really changes the outputs
    assert torch.allclose(fused, plain, atol=1e-5), (fused - plain).abs().max()


def test_fast_and_plain_trainers_give_the_same_adapters_and_losses():
    model, source, _ = tiny_decoder()
    # user c's data is shorter than a block: its rows are right-padded (the no-mask case)
    short = pattern_blocks(3, 70, n=1, T=24)
    short = Blocks(torch.cat([short.ids, short.ids]), torch.cat([short.mask, short.mask]))
    short.mask[:, 17:] = 0
    tasks = [UserTask("a", pattern_blocks(5, 3), val=pattern_blocks(5, 3, n=2), steps=10, lr=1e-2, seed=1, batch_size=2),
             UserTask("b", pattern_blocks(7, 40), steps=7, lr=3e-3, seed=2, batch_size=3),
             UserTask("c", short, steps=10, lr=5e-3, seed=3, batch_size=2)]
    plain = MultiUserTrainer(model, source, "decoder", tasks, cfg(fast=False, eval_every=5)).train()
    # no-sync reads losses in batches: the per-user losses and histories must still be exact
    trainer = MultiUserTrainer(model, source, "decoder", tasks, cfg(eval_every=5))
    assert trainer.features == {"fused-branch", "chunked-loss", "no-mask", "no-sync"}  # compile: CUDA only by default
    fast = trainer.train()
    for p, f in zip(plain, fast):
        assert (p.R - f.R).abs().max() <= 1e-5 * p.R.abs().max(), p.user
        assert f.train_loss == pytest.approx(p.train_loss, rel=1e-5)
    assert fast[0].val_loss == pytest.approx(plain[0].val_loss, rel=1e-5)
    assert [h["step"] for h in fast[0].history] == [h["step"] for h in plain[0].history] == [0, 5, 10]
    for hp, hf in zip(plain[0].history, fast[0].history):
        assert hf["val_loss"] == pytest.approx(hp["val_loss"], rel=1e-5)
        if hp["step"] > 0:  # the start is scored before any training
            assert hf["train_loss"] == pytest.approx(hp["train_loss"], rel=1e-5)
    assert source.fused is False and source.R is None  # the model is left as it was given


def test_left_padded_rows_keep_their_attention_mask():
    assert fast_path.right_padded(torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert not fast_path.right_padded(torch.tensor([[0, 1, 1]]))
    model, source, _ = tiny_decoder()
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding: real tokens after padding must not attend to it
    loss = fast_path.CausalLMLoss(*fast_path.decoder_parts(model), torch.float32, chunked=True, no_mask=True, to_device=lambda t: t)
    with torch.no_grad():
        s, c, _ = loss(ids, mask, mask, None)
        logits = model(input_ids=ids, attention_mask=mask).logits
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1), reduction="none").view(2, -1)
    valid = (mask[:, 1:] * mask[:, :-1]).float()
    assert torch.allclose(s, (ref * valid).sum(1), atol=1e-4)
    assert c.tolist() == [7.0, 11.0]


def test_compiled_layers_train_the_same_adapters_and_are_undone(monkeypatch):
    # the codegen-free backend checks tracing and autograd through RSource; GPUs use inductor
    monkeypatch.setattr(fast_path, "COMPILE_OPTIONS", {"backend": "aot_eager"})
    model, source, _ = tiny_decoder()
    tasks = [UserTask("a", pattern_blocks(5, 3), steps=5, lr=1e-2, seed=1, batch_size=2),
             UserTask("b", pattern_blocks(7, 40), steps=5, lr=1e-2, seed=2, batch_size=2)]
    plain = MultiUserTrainer(model, source, "decoder", tasks, cfg(fast=False)).train()
    compiled = MultiUserTrainer(model, source, "decoder", tasks, cfg(compile=True)).train()
    for p, c in zip(plain, compiled):
        assert (p.R - c.R).abs().max() <= 1e-5 * p.R.abs().max()
    assert all(layer._compiled_call_impl is None for layer in model.model.layers)


def test_features_pick_and_reject():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fast_path.pick_features(False, None, None, cuda) == set()
    assert "compile" in fast_path.pick_features(True, None, None, cuda)
    assert "compile" not in fast_path.pick_features(True, None, None, cpu)
    assert fast_path.pick_features(True, None, ("no-mask",), cpu) == {"no-mask"}
    with pytest.raises(ValueError, match=r"unknown fast-path features \['fused-loss'\]"):
        fast_path.pick_features(True, None, ("fused-loss",), cpu)


def test_encoders_keep_the_plain_loss_and_still_train_the_same():
    model, source, _ = tiny_encoder()
    assert fast_path.decoder_parts(model) is None
    from loraxs.job_io import Examples

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (8, 12), generator=g)
    ex = Examples(ids, torch.ones_like(ids), torch.zeros_like(ids), torch.tensor([0, 1] * 4))
    task = UserTask("e", ex, steps=4, lr=1e-2, seed=0, batch_size=4, classes=["a", "b"])
    [p] = MultiUserTrainer(model, source, "encoder", [task], cfg(fast=False)).train()
    [f] = MultiUserTrainer(model, source, "encoder", [task], cfg()).train()
    assert (p.R - f.R).abs().max() <= 1e-5 * p.R.abs().max()
    assert len(adapted_modules(model)) == source.modules


def test_a_bf16_base_keeps_fp32_factors_and_trains_to_nearly_the_same_adapter():
    model, source, _ = tiny_decoder()
    task = UserTask("a", pattern_blocks(5, 3), steps=8, lr=1e-2, seed=1, batch_size=2)
    [ref] = MultiUserTrainer(model, source, "decoder", [task], cfg()).train()
    fast_path.store_frozen_base(model, fast_path.base_dtype("bf16", "cpu"))
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(m.down.dtype == m.up.dtype == torch.float32 for _, m in adapted_modules(model))
    [low] = MultiUserTrainer(model, source, "decoder", [task], cfg()).train()
    assert low.R.dtype == torch.float32
    # bf16 weights change the path by rounding only: the same direction and nearly the same loss
    # (Adam's normalised steps turn tiny gradient differences into sign flips of single entries)
    cos = F.cosine_similarity(low.R.flatten(), ref.R.flatten(), dim=0)
    assert cos > 0.98, cos
    assert low.train_loss == pytest.approx(ref.train_loss, rel=1e-2)
    assert fast_path.base_dtype("auto", "cuda") == torch.bfloat16 and fast_path.base_dtype("auto", "cpu") == torch.float32
    with pytest.raises(ValueError, match=r"base dtype 'fp16' is not one of auto, fp32, bf16"):
        fast_path.base_dtype("fp16", "cpu")


def _round(n_users: int, tokens: list[int], batch: list[int], first_user: int = 0) -> list[UserTask]:
    """A worker round: users of uneven token counts, each with a held-out block (evaluated too)."""
    tasks = []
    for i, u in enumerate(range(first_user, first_user + n_users)):
        blocks = pack_blocks([(7 * u + k % (3 + u % 5)) % VOCAB for k in range(tokens[i])], 24)
        val = Blocks(blocks.ids[:1], blocks.mask[:1])
        tasks.append(UserTask(f"u{u}", Blocks(blocks.ids[1:], blocks.mask[1:]), val, steps=2, lr=1e-2, seed=u,
                              batch_size=batch[i]))
    return tasks


def test_rounds_of_any_size_reuse_the_compiled_graphs(monkeypatch):
    """A worker's rounds differ in users, rows and tokens; after the first (32 users) nothing compiles
    again: not 1 user (one row a step, padded), not 5 users with uneven data and batch sizes."""
    from torch._dynamo.utils import counters

    from loraxs.round_log import compile_seconds

    monkeypatch.setattr(fast_path, "COMPILE_OPTIONS", {"backend": "aot_eager"})
    torch._dynamo.reset()
    model, source, _ = tiny_decoder(layers=4)  # layers 1-3 share one graph

    def compiled() -> tuple:
        return (counters["frames"]["total"], counters["stats"]["unique_graphs"], counters["aot_autograd"]["total"],
                compile_seconds())

    def train(tasks):
        return MultiUserTrainer(model, source, "decoder", tasks, cfg(compile=True, eval_every=2)).train()

    before = compiled()  # counters add up over the whole session
    train(_round(32, [24 * 4 + 5] * 32, [4] * 32))
    after_first = compiled()
    # per grad mode: the first layer (its input needs no gradient; R's rows 0 and 1 are constants),
    # the other layers (their row of R symbolic), the loss chunk: 6 graphs, not one per layer
    assert after_first[1] - before[1] == 6, (before, after_first)
    solo = _round(1, [24 * 3 + 9], [1], first_user=40)  # 2 training blocks, 1 row a step, 1 held-out block
    [alone] = train(solo)
    assert compiled() == after_first, "a 1-user round compiled again"
    train(_round(5, [30, 24 * 6, 49, 24 * 11 + 7, 24 * 2], [4, 3, 2, 4, 1], first_user=50))
    assert compiled() == after_first, "a round of 5 uneven users compiled again"
    # the padded row carries no loss and no gradient: the plain (uncompiled, unpadded) path agrees
    [plain] = MultiUserTrainer(model, source, "decoder", solo, cfg(fast=False, eval_every=2)).train()
    assert (alone.R - plain.R).abs().max() <= 1e-5 * plain.R.abs().max()
    assert alone.val_loss == pytest.approx(plain.val_loss, rel=1e-5)
