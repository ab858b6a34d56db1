"""The trainer on tiny random-weight models (CPU): only R changes, loss falls, users are independent."""

from __future__ import annotations

import math

import pytest
import torch

from loraxs.data import Blocks, DataError, JobOptions, TextData, parse_job_data, parse_options, pack_blocks
from loraxs.evaluate import classification_metrics, perplexity, predict
from loraxs.lora_xs import Factors, find_target_modules, inject
from loraxs.job_io import Examples, UserTask
from loraxs.svd import SvdOptions, compute_factors
from loraxs.train import MultiUserTrainer, TableAdamW, TrainConfig, lr_at

VOCAB = 96
RANK = 4


def tiny_factors(model: torch.nn.Module, targets: str = "q_proj,v_proj", rank: int = RANK) -> Factors:
    """Exact SVD factors (down = Σ Vᵀ, up = U) of the target layers, in module order: what
    `prepare --exact` computes."""
    names = find_target_modules(model, targets)
    return compute_factors(model, names, rank, SvdOptions(method="exact"), log=lambda _: None)[0]


def tiny_decoder(seed: int = 0, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=128, tie_word_embeddings=True,
                      initializer_range=0.2)  # larger than default so that q/v changes reach the logits
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).eval()
    factors = tiny_factors(model)
    source = inject(model, factors)
    return model, source, factors


def tiny_encoder(seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     vocab_size=VOCAB, max_position_embeddings=64, initializer_range=0.2)
    cfg._attn_implementation = "eager"
    model = BertModel(cfg, add_pooling_layer=False).eval()
    factors = tiny_factors(model, targets="query,value")
    source = inject(model, factors)
    return model, source, factors


def pattern_blocks(period: int, offset: int, n: int = 8, T: int = 24) -> Blocks:
    """A user's 'style': a repeating token cycle, easy for R to learn and distinct per user."""
    stream = [(offset + (i % period)) % VOCAB for i in range(n * T)]
    return pack_blocks(stream, T)


def cfg(**kw) -> TrainConfig:
    return TrainConfig(progress=False, **kw)


def frozen_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_only_R_changes_and_base_and_factors_stay_bit_identical():
    model, source, _ = tiny_decoder()
    before = frozen_state(model)
    tasks = [UserTask("a", pattern_blocks(5, 3), steps=15, lr=5e-3, seed=1),
             UserTask("b", pattern_blocks(7, 40), steps=10, lr=5e-3, seed=2)]
    trainer = MultiUserTrainer(model, source, "decoder", tasks, cfg())
    R0 = trainer.table.detach().clone()
    results = trainer.train()
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert any(k.endswith(".down") for k in after) and any(k.endswith(".up") for k in after)
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"{k} changed during training"
    assert all(not p.requires_grad for p in model.parameters())
    for u, r in enumerate(results):
        assert r.R.shape == (source.modules, RANK, RANK)
        assert (r.R - R0[u]).abs().max() > 1e-4, f"user {r.user}'s R did not move"
    assert [r.steps for r in results] == [15, 10]


def test_loss_goes_down_on_a_small_task():
    model, source, _ = tiny_decoder()
    train, held = pattern_blocks(5, 3, n=8), pattern_blocks(5, 3, n=2)
    base_ppl = perplexity(model, source, held)
    [r] = MultiUserTrainer(model, source, "decoder", [UserTask("a", train, steps=60, lr=5e-2, seed=0)], cfg()).train()
    ppl = perplexity(model, source, held, r.R)
    assert ppl < 0.3 * base_ppl, (base_ppl, ppl)
    assert math.isfinite(r.train_loss) and r.train_loss < math.log(base_ppl)
    # R = 0 gives the base model exactly: the adapter is the only thing that changed the outputs
    assert perplexity(model, source, held, torch.zeros_like(r.R)) == pytest.approx(base_ppl, rel=1e-6)


def test_many_users_get_the_adapters_they_would_get_alone():
    model, source, _ = tiny_decoder()
    tasks = [UserTask("a", pattern_blocks(5, 3), steps=12, lr=1e-2, seed=11, batch_size=2),
             UserTask("b", pattern_blocks(7, 40), steps=8, lr=3e-3, seed=12, batch_size=3),
             UserTask("c", pattern_blocks(3, 70, n=3), steps=12, lr=5e-3, seed=13, batch_size=4)]
    together = MultiUserTrainer(model, source, "decoder", tasks, cfg()).train()
    for t, r in zip(tasks, together):
        [alone] = MultiUserTrainer(model, source, "decoder", [t], cfg()).train()
        scale = alone.R.abs().max()
        assert (r.R - alone.R).abs().max() <= 1e-4 * scale, f"user {t.user}: multi-user R differs from solo"
        assert r.steps == alone.steps == t.steps
    # and users really differ from each other
    assert (together[0].R - together[1].R).abs().max() > 1e-3


def test_same_inputs_and_seed_give_identical_R():
    def run(seed):
        model, source, _ = tiny_decoder()
        tasks = [UserTask("a", pattern_blocks(5, 3), steps=6, lr=1e-2, seed=seed)]
        return MultiUserTrainer(model, source, "decoder", tasks, cfg()).train()[0].R

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_table_adamw_matches_torch_adamw_for_one_user():
    torch.manual_seed(0)
    p_ref = torch.nn.Parameter(torch.randn(3, 4, 4))
    p_tab = torch.nn.Parameter(p_ref.detach().clone().unsqueeze(0))
    ref = torch.optim.AdamW([p_ref], lr=1e-2, weight_decay=0.01, foreach=False)
    tab = TableAdamW([p_tab], weight_decay=0.01)
    for _ in range(10):
        g = torch.randn(3, 4, 4)
        p_ref.grad = g.clone()
        p_tab.grad = g.clone().unsqueeze(0)
        ref.step()
        tab.step(torch.tensor([True]), [torch.tensor([1e-2])])
    assert torch.allclose(p_ref.detach(), p_tab.detach()[0], rtol=1e-5, atol=1e-6)


def test_inactive_users_rows_do_not_move():
    p = torch.nn.Parameter(torch.randn(2, 3))
    before = p.detach().clone()
    opt = TableAdamW([p], weight_decay=0.1)
    p.grad = torch.ones(2, 3)
    opt.step(torch.tensor([True, False]), [torch.tensor([0.1, 0.1])])
    assert torch.equal(p.detach()[1], before[1])
    assert not torch.equal(p.detach()[0], before[0])


def test_per_user_clip_leaves_other_users_gradients_alone():
    p = torch.nn.Parameter(torch.zeros(2, 4))
    p.grad = torch.tensor([[30.0, 40.0, 0, 0], [0.3, 0.4, 0, 0]])
    TableAdamW([p]).clip_(1.0)
    assert torch.allclose(p.grad[0].norm(), torch.tensor(1.0), atol=1e-5)
    assert torch.allclose(p.grad[1], torch.tensor([0.3, 0.4, 0, 0]))


def test_early_stopping_keeps_the_best_snapshot_per_user():
    model, source, _ = tiny_decoder()
    # user a: held-out text unlike its training text, so held-out loss soon rises: it stops early
    a = UserTask("a", pattern_blocks(5, 3), val=pattern_blocks(11, 50, n=2), steps=40, lr=5e-2, seed=1)
    b = UserTask("b", pattern_blocks(7, 40), steps=40, lr=5e-3, seed=2)
    ra, rb = MultiUserTrainer(model, source, "decoder", [a, b], cfg(eval_every=4, patience=1)).train()
    assert ra.stopped_early and ra.steps < 40
    assert ra.best_step < ra.steps and ra.val_loss == min(h["val_loss"] for h in ra.history)
    # the kept R is the best one: its held-out loss is the recorded best
    total_ppl = perplexity(model, source, a.val, ra.R)
    assert math.log(total_ppl) == pytest.approx(ra.val_loss, rel=1e-4)
    assert rb.steps == 40 and not rb.stopped_early and rb.val_loss is None


def test_lr_schedule_warms_up_then_decays_to_min():
    c = cfg(warmup_frac=0.1, min_lr_frac=0.1)
    lrs = [lr_at(s, 100, 1.0, c) for s in range(1, 101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(x >= y for x, y in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1)


def test_encoder_trains_R_and_head_on_labelled_examples():
    model, source, _ = tiny_encoder()
    before = frozen_state(model)
    g = torch.Generator().manual_seed(0)

    def examples(n):
        labels = torch.randint(0, 2, (n,), generator=g)
        ids = torch.randint(5, VOCAB, (n, 12), generator=g)
        ids[:, 2:8] = torch.where(labels == 1, 1, 2).unsqueeze(1)  # the signal tokens
        return Examples(ids, torch.ones_like(ids), torch.zeros_like(ids), labels)

    train, test = examples(64), examples(64)
    task = UserTask("u", train, steps=60, lr=1e-2, seed=0, batch_size=8, classes=["ham", "spam"])
    [r] = MultiUserTrainer(model, source, "encoder", [task], cfg(head_lr=5e-2)).train()
    assert r.head_weight.shape == (2, 32) and r.head_bias.shape == (2,) and r.classes == ["ham", "spam"]
    m = classification_metrics(predict(model, source, test, r.R, r.head_weight, r.head_bias), test.labels, positive=1)
    assert m["accuracy"] >= 0.9, m
    for k, v in before.items():
        assert torch.equal(v, model.state_dict()[k]), f"{k} changed"


def test_classification_metrics_binary_f1():
    pred, gold = torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 0, 1])
    assert classification_metrics(pred, gold, positive=1) == {"accuracy": 0.5, "f1": 0.5}


@pytest.mark.parametrize(
    "data, family, needle",
    [
        ({"kind": "text", "texts": []}, "decoder", "data.texts must be a non-empty list"),
        ({"kind": "text", "texts": ["ok", 7]}, "decoder", "data.texts[1] = 7"),
        ({"kind": "labels", "examples": [{"text": "a", "label": "x"}]}, "decoder", "does not fit a decoder"),
        ({"kind": "pictures"}, "decoder", "data.kind = 'pictures'"),
        ({"kind": "labels", "examples": [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}]}, "encoder", "single label 'x'"),
        ({"kind": "labels", "examples": [{"text": "a", "label": None}]}, "encoder", "data.examples[0].label = None"),
        ("just text", "decoder", "data must be an object; got 'just text'"),
    ],
)
def test_bad_job_data_names_the_offending_value(data, family, needle):
    with pytest.raises(DataError, match=None) as e:
        parse_job_data(data, family)
    assert needle in str(e.value)


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"steps": 0}, "options.steps = 0"),
        ({"lr": "fast"}, "options.lr = 'fast'"),
        ({"seq_len": 100000}, "options.seq_len = 100000"),
        ({"epochs": 3}, "unknown key 'epochs'"),
    ],
)
def test_bad_options_name_the_offending_value(options, needle):
    with pytest.raises(DataError) as e:
        parse_options(options)
    assert needle in str(e.value)


def test_good_data_and_options_parse():
    d = parse_job_data({"kind": "text", "texts": ["hello"]}, "decoder")
    assert isinstance(d, TextData) and d.texts == ["hello"]
    o = parse_options({"steps": 5, "lr": 0.01, "seq_len": 64, "seed": 3})
    assert (o.steps, o.lr, o.seq_len, o.seed) == (5, 0.01, 64, 3)
    assert parse_options(None) == JobOptions()


def test_pack_blocks_pads_the_tail_and_masks_it():
    b = pack_blocks(list(range(10)), 4)
    assert b.ids.shape == (3, 4) and b.tokens == 10
    assert b.mask[2].tolist() == [1, 1, 0, 0]


def test_pack_blocks_with_bos_starts_every_block_with_it_and_keeps_the_text_whole():
    b = pack_blocks(list(range(10, 17)), 4, pad_id=0, bos_id=99)
    assert b.ids.tolist() == [[99, 10, 11, 12], [99, 13, 14, 15], [99, 16, 0, 0]]
    assert b.mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]]  # bos + 1 token still has a target
    with pytest.raises(ValueError, match="seq_len = 2"):
        pack_blocks([1, 2, 3], 2, bos_id=99)


def fake_manifest(tmp_path, factors: Factors, model_id: str, family: str, hidden: int = 32) -> dict:
    """The manifest fields the trainer reads, for a factor file really written and hashed."""
    from loraxs.lora_xs import save_factors

    digest = save_factors(tmp_path / "factors.safetensors", factors, model_id)
    return {"id": model_id, "family": family, "rank": factors.rank,
            "modules": [{"name": n} for n in factors.names],
            "factors": {"file": "factors.safetensors", "sha256": digest}, "config": {"hidden_size": hidden}}


def test_trainer_adapter_decodes_against_the_manifest_and_is_byte_reproducible(tmp_path):
    from loraxs.format import AdapterFormatError, decode_adapter
    from loraxs.job_io import encode_result, expectations

    def run():
        model, source, factors = tiny_decoder()
        tasks = [UserTask("alice", pattern_blocks(5, 3), steps=5, lr=1e-2, seed=3)]
        return factors, MultiUserTrainer(model, source, "decoder", tasks, cfg()).train()[0]

    factors, r = run()
    manifest = fake_manifest(tmp_path, factors, "tiny-test", "decoder")
    data = encode_result(r, manifest, source="worker", created="2026-11-28T00:00:00Z")
    a = decode_adapter(data, expect=expectations(manifest))
    assert a.R.shape == (len(factors.names), RANK, RANK) and a.dtype == "F16" and a.head is None
    assert a.metadata["source"] == "worker" and a.metadata["steps"] == "5"
    assert a.metadata["created"] == "2026-11-28T00:00:00Z"
    assert torch.allclose(torch.from_numpy(a.R), r.R.half().float())
    # same inputs + seed -> identical bytes
    assert encode_result(run()[1], manifest, source="worker", created="2026-11-28T00:00:00Z") == data
    # an adapter for another factor set is refused
    with pytest.raises(AdapterFormatError) as e:
        decode_adapter(data, expect={**expectations(manifest), "factors": "sha256:" + "0" * 64})
    assert e.value.code == "factors_mismatch"


def test_encoder_adapter_carries_head_and_labels(tmp_path):
    from loraxs.format import decode_adapter
    from loraxs.job_io import encode_result, expectations

    model, source, factors = tiny_encoder()
    ids = torch.randint(5, VOCAB, (8, 10), generator=torch.Generator().manual_seed(0))
    ex = Examples(ids, torch.ones_like(ids), torch.zeros_like(ids), torch.arange(8) % 3)
    task = UserTask("u", ex, steps=3, lr=1e-2, seed=0, batch_size=4, classes=["a", "b", "c"])
    [r] = MultiUserTrainer(model, source, "encoder", [task], cfg()).train()
    manifest = fake_manifest(tmp_path, factors, "tiny-enc", "encoder", hidden=32)
    a = decode_adapter(encode_result(r, manifest), expect=expectations(manifest))
    assert a.head is not None and a.head.labels == ["a", "b", "c"]
    assert a.head.weight.shape == (3, 32) and a.head.bias.shape == (3,)
    assert torch.allclose(torch.from_numpy(a.head.weight), r.head_weight.half().float())


def test_job_defaults_give_decoders_the_tuned_rate_and_keep_explicit_options():
    from loraxs.data import DECODER_LR, job_defaults

    assert parse_options({}, job_defaults("decoder")).lr == DECODER_LR == 1e-2
    assert parse_options({}, job_defaults("encoder")).lr == JobOptions().lr == 2e-3
    assert parse_options({"lr": 0.003}, job_defaults("decoder")).lr == 0.003
