"""factlab.train: the course's learning-rate schedule and hyperparameters, and short real training runs
(loss goes down, runs repeat bit for bit, metrics file, time limit)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings, strategies as st

from conftest import make_model, quick_train, tiny_config
from factlab.data import collate
from factlab import FactlabError
from factlab.model import VARIANTS
from factlab.train import TrainConfig, learning_rate, micro_batches, train, uses_bf16, uses_tf32

PROPERTY = settings(max_examples=50, deadline=None)


def schedule(warmup=1000, final=10_000, lr=6e-3) -> TrainConfig:
    """factlab's own schedule ("floor"); the course's is tested in test_course_trainer.py."""
    return TrainConfig(max_epochs=1, batch_size=1, learning_rate=lr, final_tokens=final, warmup_tokens=warmup,
                       lr_schedule="floor")


def test_schedule_landmarks():
    """0 at 0 tokens, linear warmup, peak at the end of warmup, 10% at final_tokens and forever after."""
    config = schedule()
    assert learning_rate(config, 0) == 0.0
    assert learning_rate(config, 250) == pytest.approx(6e-3 / 4)
    assert learning_rate(config, 500) == pytest.approx(6e-3 / 2)
    assert learning_rate(config, 1000) == pytest.approx(6e-3)
    assert learning_rate(config, 5500) == pytest.approx(6e-3 * 0.5)  # the cosine's midpoint
    assert learning_rate(config, 10_000) == pytest.approx(6e-4)
    for tokens in (10_001, 15_000, 19_000, 10**9):  # the course's formula would rise again here
        assert learning_rate(config, tokens) == pytest.approx(6e-4)


@PROPERTY
@given(warmup=st.integers(1, 10**5), span=st.integers(1, 10**7), lr=st.floats(1e-6, 1.0),
       a=st.integers(0, 3 * 10**7), b=st.integers(0, 3 * 10**7))
def test_schedule_properties(warmup, span, lr, a, b):
    """Linear in warmup, within [10%, 100%] of the peak after it, and never increasing after warmup."""
    config = schedule(warmup, warmup + span, lr)
    lo, hi = sorted((a, b))
    for tokens in (lo, hi):
        value = learning_rate(config, tokens)
        if tokens < warmup:
            assert value == pytest.approx(lr * tokens / warmup)
        else:
            assert 0.1 * lr * (1 - 1e-9) <= value <= lr * (1 + 1e-9)
    if lo >= warmup:
        assert learning_rate(config, hi) <= learning_rate(config, lo) * (1 + 1e-12)
    else:
        assert learning_rate(config, lo) <= learning_rate(config, min(hi, warmup)) * (1 + 1e-12)


@PROPERTY
@given(tokens=st.integers(1000, 3 * 10**4), time_used=st.floats(0.0, 2.0))
def test_schedule_follows_the_clock_further_along(tokens, time_used):
    """Under a time limit the cosine runs on the further of tokens and the fraction of time used: never above the
    token schedule, and at the floor once the time is up."""
    config = schedule()
    token_progress = (tokens - 1000) / 9000
    assert learning_rate(config, tokens, time_used) <= learning_rate(config, tokens) * (1 + 1e-12)
    if time_used >= token_progress:
        assert learning_rate(config, tokens, time_used) == pytest.approx(
            learning_rate(config, 1000 + round(min(time_used, 1.0) * 9000)), rel=1e-3)
    if time_used >= 1.0:
        assert learning_rate(config, tokens, time_used) == pytest.approx(6e-4)


def test_time_limited_run_ends_on_the_decayed_rate(tmp_path, finetune_ds, vocab, step_clock):
    """A run that the time limit stops long before final_tokens still decays its rate to near the floor."""
    model = make_model(tiny_config(len(vocab)))
    config = TrainConfig(max_epochs=10**6, batch_size=8, learning_rate=1e-3, final_tokens=10**12,
                         warmup_tokens=0, max_minutes=1.5 / 60, lr_schedule="floor")
    result = train(model, finetune_ds, config, metrics_path=tmp_path / "m.jsonl", progress=False)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert result.stopped_early and len(rates) > 20
    assert rates == sorted(rates, reverse=True)
    assert rates[-1] < 0.2e-3  # by tokens alone it would still be at the 1e-3 peak


def dataset_loss(model, dataset) -> float:
    model.eval()
    with torch.no_grad():
        _, loss = model(*collate([dataset.example(i) for i in range(len(dataset))]))
    return loss.item()


def test_training_reduces_loss(finetune_ds, vocab):
    """A few epochs on the tiny finetuning set lower its loss well below the initial one."""
    model = make_model(tiny_config(len(vocab)))
    before = dataset_loss(model, finetune_ds)
    result = quick_train(model, finetune_ds, epochs=5, batch_size=16)
    after = dataset_loss(model, finetune_ds)
    assert result.steps == 5 * 3 and not result.stopped_early
    assert after < 0.75 * before, (before, after)
    assert not model.training


def test_same_seed_same_parameters(finetune_ds, vocab):
    """Two runs with the same seeds (model init, batches, dropout) end with identical parameters; another
    training seed gives different ones (it orders the length-grouped batches; the course's batches of questions
    are in file order, where only the model's seed tells runs apart)."""
    def run(seed):
        model = make_model(tiny_config(len(vocab), dropout=0.1), seed=0)
        quick_train(model, finetune_ds, epochs=1, batch_size=8, seed=seed, batching="length")
        return model.state_dict()

    first, second, other = run(0), run(0), run(1)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("variant", VARIANTS)
def test_micro_batches_give_the_whole_batchs_gradient(pretrain_ds, vocab, variant):
    """Computed in passes of 5 rows sorted by length, each cut to its own longest, a course batch of 16 has
    the gradient and the loss of the whole batch at once (fp32, no dropout), in every variant: rows are
    independent and padding is never trained on. (Adam's first step, about lr times the gradient's sign,
    would magnify rounding in near-zero gradients, so the gradients are compared, not the parameters.)"""
    def run(micro_batch):
        model = make_model(tiny_config(len(vocab), variant), seed=0)
        steps = []
        quick_train(model, pretrain_ds, epochs=1, batch_size=16, max_steps=2, micro_batch=micro_batch,
                    on_step=lambda record: steps.append(
                        (record["loss"], {k: p.grad.clone() for k, p in model.named_parameters()})))
        return steps

    whole, passes = run(None), run(5)
    assert whole[1][0] == pytest.approx(passes[1][0], abs=1e-4)  # the second step's loss, after one update
    (loss, grads), (loss_passes, grads_passes) = whole[0], passes[0]
    assert loss == pytest.approx(loss_passes, abs=1e-5)
    for name, grad in grads.items():
        assert torch.allclose(grad, grads_passes[name], rtol=1e-4, atol=1e-7), name


def test_micro_batches_are_sorted_passes_cut_to_their_longest_row():
    x = torch.tensor([[5, 0, 0, 0], [5, 6, 7, 8], [5, 6, 0, 0], [5, 6, 7, 0], [5, 0, 0, 0]])
    passes = micro_batches(x, x.clone(), 2)
    assert [p[0].tolist() for p in passes] == [[[5, 6, 7, 8], [5, 6, 7, 0]], [[5, 6], [5, 0]], [[5]]]
    assert micro_batches(x, x, None)[0][0] is x and micro_batches(x, x, 5)[0][0] is x
    with pytest.raises(FactlabError, match="micro_batch 0: must be at least 1"):
        TrainConfig(max_epochs=1, batch_size=1, learning_rate=1.0, final_tokens=1, micro_batch=0)


def test_metrics_jsonl(tmp_path, finetune_ds, vocab):
    """One JSON line per step with loss, lr and tokens; tokens count the non-PAD inputs (one epoch = the
    sum of the example lengths); lr follows the schedule."""
    model = make_model(tiny_config(len(vocab)))
    config = TrainConfig(max_epochs=2, batch_size=16, learning_rate=1e-3, final_tokens=10**6,
                         warmup_tokens=5 * 16 * 63, lr_schedule="floor")
    metrics_path = tmp_path / "run.metrics.jsonl"
    result = train(model, finetune_ds, config, metrics_path=metrics_path, progress=False)
    lines = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    assert len(lines) == result.steps == 6
    assert [m["step"] for m in lines] == list(range(1, 7))
    assert all({"loss", "lr", "tokens"} <= m.keys() for m in lines)
    assert all(m["loss"] > 0 for m in lines)
    epoch_tokens = sum(len(finetune_ds.example(i)[0]) for i in range(len(finetune_ds)))
    assert lines[2]["tokens"] == epoch_tokens and lines[-1]["tokens"] == 2 * epoch_tokens == result.tokens
    assert [m["lr"] for m in lines[:3]] == sorted(m["lr"] for m in lines[:3])  # warming up
    assert 0 < lines[0]["lr"] < 1e-3
    assert result.final_loss == pytest.approx(lines[-1]["loss"], abs=1e-4)


def test_max_minutes_stops_after_first_step(tmp_path, finetune_ds, vocab):
    """A tiny time limit stops after the first step, says so, and still writes the metrics."""
    model = make_model(tiny_config(len(vocab)))
    config = TrainConfig(max_epochs=50, batch_size=8, learning_rate=1e-3, final_tokens=10**6,
                         max_minutes=1e-9)  # 60 ns: any step takes longer
    result = train(model, finetune_ds, config, metrics_path=tmp_path / "m.jsonl", progress=False)
    assert result.stopped_early and result.steps == 1
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 1


def test_pretraining_dataset_trains(pretrain_ds, vocab):
    """The trainer also runs on span corruption (fresh corruptions each epoch) and the loss is finite."""
    model = make_model(tiny_config(len(vocab), variant="synthesizer"))
    result = quick_train(model, pretrain_ds, epochs=1, batch_size=16)
    assert result.steps == 4 and torch.isfinite(torch.tensor(result.final_loss))


def test_max_minutes_zero_is_a_limit(finetune_ds, vocab):
    """max_minutes=0 is the tightest limit (stop after the first step), not 'unlimited' (that is None)."""
    model = make_model(tiny_config(len(vocab)))
    config = TrainConfig(max_epochs=3, batch_size=16, learning_rate=1e-3, final_tokens=10**6, max_minutes=0.0)
    result = train(model, finetune_ds, config, progress=False)
    assert result.stopped_early and result.steps == 1


def test_bf16_precision_on_cpu_autocasts_the_forward_and_still_learns(finetune_ds, vocab):
    """--precision bf16 runs the forward pass under CPU autocast (its linear layers compute in bf16), keeps the
    parameters in fp32, lowers the loss like fp32 does; the default on a CPU stays fp32."""
    def linear_dtypes(precision):
        model = make_model(tiny_config(len(vocab)), seed=0)
        seen = set()
        before = dataset_loss(model, finetune_ds)
        hook = model.head.register_forward_hook(lambda module, args, output: seen.add(output.dtype))
        quick_train(model, finetune_ds, epochs=5, batch_size=16, precision=precision)
        hook.remove()
        return seen, before, dataset_loss(model, finetune_ds), model

    seen, before, after, model = linear_dtypes("bf16")
    assert seen == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert after < 0.75 * before, (before, after)
    for default in ("auto", "fp32"):
        assert linear_dtypes(default)[0] == {torch.float32}


def test_tf32_goes_with_autocast_and_fp32_means_fp32():
    """On a GPU, "auto" and "bf16" allow TF32 matmuls; "fp32" (the course recipe's) computes as the course's code."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert [uses_tf32(p, cuda) for p in ("auto", "bf16", "fp32")] == [True, True, False]
    assert [uses_bf16(p, cuda) for p in ("auto", "bf16", "fp32")] == [True, True, False]
    assert not any(uses_tf32(p, cpu) or uses_bf16(p, cpu) for p in ("auto", "fp32"))


def test_unknown_precision_is_one_clear_error(finetune_ds, vocab):
    with pytest.raises(FactlabError, match="precision 'fp8': unknown"):
        quick_train(make_model(tiny_config(len(vocab))), finetune_ds, epochs=1, precision="fp8")


def test_compiled_training_follows_the_eager_one(finetune_ds, vocab):
    """--compile trains the same model through torch.compile (one dynamic-length graph): without dropout it ends
    where eager training ends, up to the compiler's rounding, and leaves the model itself uncompiled."""
    def run(compile_):
        model = make_model(tiny_config(len(vocab)), seed=0)
        result = quick_train(model, finetune_ds, epochs=2, batch_size=16, compile=compile_)
        return model, result

    (eager, eager_result), (compiled, compiled_result) = run(False), run(True)
    assert compiled_result.steps == eager_result.steps == 2 * 3
    assert compiled_result.final_loss == pytest.approx(eager_result.final_loss, rel=1e-3)
    assert type(compiled) is type(eager) and compiled.state_dict().keys() == eager.state_dict().keys()
    for name, tensor in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[name], tensor, atol=1e-4, rtol=1e-3, msg=name)
