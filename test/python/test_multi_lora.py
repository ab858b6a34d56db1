"""The multi-user LoRA peer: one user's training equals PEFT's LoRA step for step; users stay independent."""

from __future__ import annotations

import copy

import torch

from loraxs.data import Blocks
from loraxs.multi_lora import MultiUserLoraTrainer, inject_lora
from loraxs.job_io import UserTask
from loraxs.train import Stream, TrainConfig, lm_losses, lr_at
from test_train import VOCAB, pattern_blocks


def plain_decoder(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=128, tie_word_embeddings=True,
                      initializer_range=0.2)
    cfg._attn_implementation = "eager"
    return LlamaForCausalLM(cfg).eval()


NAMES = ["model.layers.0.self_attn.q_proj"]  # one module: PEFT seeds it exactly as the table does
CFG = TrainConfig(device="cpu", progress=False, fast=False, compile=False, warmup_frac=0.2)


def peft_train(model, blocks: Blocks, seed: int, steps: int, batch: int, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PEFT LoRA r=4 alpha=8 with the trainer's order, schedule and clip: (its starting A, ΔW at the end)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    m = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=NAMES))
    layer = m.base_model.model.model.layers[0].self_attn.q_proj
    A0 = layer.lora_A["default"].weight.detach().clone()
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    stream = Stream(len(blocks), seed)
    for step in range(1, steps + 1):
        idx = stream.take(batch)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, CFG)
        s, c = lm_losses(m(input_ids=blocks.ids[idx], attention_mask=blocks.mask[idx]).logits, blocks.ids[idx], blocks.mask[idx])
        (s.sum() / c.sum()).backward()
        torch.nn.utils.clip_grad_norm_(params, CFG.grad_clip)
        opt.step()
        opt.zero_grad()
    return A0, layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight


def test_one_user_matches_peft_step_for_step():
    model = plain_decoder()
    blocks = pattern_blocks(5, 3)
    A0, want = peft_train(model, blocks, seed=11, steps=6, batch=2, lr=0.02)
    clone = copy.deepcopy(model)
    source = inject_lora(clone, NAMES, rank=4, alpha=8)
    trainer = MultiUserLoraTrainer(clone, source, [UserTask("a", blocks, None, 6, 0.02, 11, 2)], CFG)
    # Same init distribution (Kaiming-uniform, a = sqrt 5); PEFT draws it after other draws, so start
    # from PEFT's own A: what is compared is the training arithmetic.
    assert abs(float(trainer.params[0].detach().std()) - float(A0.std())) < 0.3 * float(A0.std())
    with torch.no_grad():
        trainer.params[0][0] = A0
    trainer.train()
    got = trainer.delta(0, 0)
    assert want.abs().max() > 1e-3  # the update is real, not the zero start
    torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-6)


def test_users_trained_together_equal_users_trained_alone():
    model = plain_decoder()
    a, b = pattern_blocks(5, 3), pattern_blocks(7, 40)
    tasks = [UserTask("a", a, None, 4, 0.02, 1, 2), UserTask("b", b, None, 4, 0.05, 2, 2)]

    def run(ts):
        clone = copy.deepcopy(model)
        names = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]
        tr = MultiUserLoraTrainer(clone, inject_lora(clone, names, rank=4, alpha=8), ts, CFG)
        tr.train()
        return tr

    both, alone_b = run(tasks), run(tasks[1:])
    for m in range(2):
        torch.testing.assert_close(both.delta(1, m), alone_b.delta(0, m), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(both.delta(0, 0), both.delta(1, 0))


def test_a_user_whose_validation_never_improves_keeps_the_base_model():
    model = plain_decoder()
    train, val = pattern_blocks(5, 3), pattern_blocks(7, 40)  # validation text unlike the training text
    clone = copy.deepcopy(model)
    source = inject_lora(clone, NAMES, rank=4, alpha=8)
    cfg = TrainConfig(**{**CFG.__dict__, "eval_every": 2, "patience": 2})
    trainer = MultiUserLoraTrainer(clone, source, [UserTask("a", train, val, 8, 0.05, 1, 2)], cfg)
    (res,) = trainer.train()
    assert res.history[0]["step"] == 0 and all(h["val_loss"] > res.history[0]["val_loss"] for h in res.history[1:])
    assert res.best_step == 0 and res.val_loss == res.history[0]["val_loss"]
    assert torch.count_nonzero(trainer.delta(0, 0)) == 0  # B is still zero: exactly the base model
