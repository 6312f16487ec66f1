"""The default trainer is the course's Trainer (factlab.course_reference): the same learning rate at every
step of a 650-epoch clock, the same weight-decay groups, and, from the same weights on the same batches, the
same parameters after k optimizer steps."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import make_model, tiny_config
from factlab import checkpoint, course_reference as course
from factlab.data import NameDataset
from factlab.model import GPT, GPTConfig
from factlab.recipes import Training, train_config
from factlab.train import TrainConfig, decay_groups, step_rate, train


def course_step_rates(config, batch_sizes, positions):
    """The rate the course's Trainer applies at each step: its optimizer's initial lr for the first step, then
    the rate it set after the previous step from the tokens counted so far."""
    rates, tokens = [config.learning_rate], 0
    for rows in batch_sizes[:-1]:
        tokens += rows * positions
        rates.append(config.learning_rate * course.lr_mult(config, tokens))
    return rates


def test_rate_at_every_step_of_a_650_epoch_clock_is_the_courses():
    """wiki.txt's 2,937 documents in batches of 128 for 650 epochs (15,600 steps, the last batch of each epoch
    short): factlab's rate equals the course's formula at every step, including where it rises again after
    final_tokens (epoch 200) and falls again."""
    n_documents, block = 2937, 128
    ours = train_config("pretrain", Training(), n_documents, block)
    theirs = course.TrainerConfig.course_pretrain(n_documents, block)
    per_epoch = [128] * (n_documents // 128) + [n_documents % 128]
    batch_sizes = per_epoch * 650
    expected = course_step_rates(theirs, batch_sizes, block - 1)
    tokens, got = 0, []
    for step, rows in enumerate(batch_sizes, start=1):
        got.append(step_rate(ours, step, tokens, tokens + rows * (block - 1), 0.0))
        tokens += rows * (block - 1)
    assert len(got) == 650 * 23
    assert got == pytest.approx(expected, rel=1e-12, abs=0)
    # The shape the issue describes: 10% near epoch 200, full again near 400, 10% near 600.
    by_epoch = {e: got[e * 23 - 1] / 6e-3 for e in (200, 400, 600)}
    assert by_epoch[200] == pytest.approx(0.1, abs=1e-3) and by_epoch[400] > 0.99 and by_epoch[600] == 0.1


def test_floor_schedule_is_a_named_option():
    """factlab's schedule holds 10% after final_tokens; the course's rises again."""
    course_config = TrainConfig(max_epochs=1, batch_size=1, learning_rate=1.0, final_tokens=1000, warmup_tokens=0)
    floor = TrainConfig(max_epochs=1, batch_size=1, learning_rate=1.0, final_tokens=1000, warmup_tokens=0,
                        lr_schedule="floor")
    assert step_rate(floor, 3, 1500, 2000, 0.0) == pytest.approx(0.1)
    assert step_rate(course_config, 3, 2000, 2500, 0.0) == pytest.approx(1.0)  # progress 2: cos(2 pi) = 1
    assert step_rate(course_config, 1, 0, 500, 0.0) == 1.0  # the course's first step runs at the full rate


def test_weight_decay_groups_are_the_courses():
    """The course decays every parameter whose name has neither "bias" nor "LayerNorm.weight": in this model that
    is every weight, the embeddings, pos_emb and the LayerNorm weights included; "matmul" spares them."""
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=8))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, spared = decay_groups(model, "course")
    assert {names[id(p)] for p in spared} == {n for n in names.values() if n.endswith("bias")}
    assert {"tok_emb.weight", "pos_emb", "blocks.0.ln1.weight", "ln_f.weight"} <= {names[id(p)] for p in decayed}
    matmul, rest = decay_groups(model, "matmul")
    assert {"tok_emb.weight", "pos_emb", "ln_f.weight"} <= {names[id(p)] for p in rest}
    assert len(matmul) + len(rest) == len(decayed) + len(spared) == len(list(model.parameters()))


@pytest.mark.parametrize("variant", ["vanilla", "synthesizer"])
def test_k_steps_give_the_course_trainers_parameters(tmp_path, corpus, pretrain_ds, variant):
    """From the same initial weights (the course model's, imported as a course .params file), on the same batches
    (one batch of every question per epoch, so the order of batches cannot differ), 6 optimizer steps of
    factlab's trainer and of the course's Trainer end with the same parameters (fp32, within 1e-5); the
    synthesizer is the course's, one B shared by the heads. The schedule is short enough to warm up, pass
    final_tokens and rise."""
    questions = NameDataset(pretrain_ds, corpus.train)
    n, block = len(questions), pretrain_ds.block_size
    options = dict(max_epochs=6, batch_size=n, learning_rate=3e-3, warmup_tokens=n * (block - 1) // 2,
                   final_tokens=3 * n * (block - 1), weight_decay=0.1)
    config = tiny_config(len(pretrain_ds.vocab), variant)
    reference = course.randomize(course.from_factlab(make_model(config, seed=0)), seed=1)
    initial = {name: value.clone() for name, value in reference.state_dict().items()}
    torch.save(reference.state_dict(), tmp_path / "course.params")
    model, _ = checkpoint.load(tmp_path / "course.params", config, pretrain_ds.vocab)
    reference.train()
    course.Trainer(reference, questions, course.TrainerConfig(lr_decay=True, **options)).train()
    train(model, questions, TrainConfig(**options), progress=False)
    ours = course.from_factlab(model).state_dict()
    for name, value in reference.state_dict().items():
        assert torch.allclose(ours[name], value, atol=1e-5, rtol=0), name
    moved = sum((value - initial[name]).abs().sum() for name, value in ours.items())
    assert math.isfinite(float(moved)) and moved > 0
