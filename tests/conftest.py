"""Shared fixtures: a tiny synthetic corpus (in memory and written to tmp_path) and tiny-model factories.

Everything here is small on purpose: the suite runs on a 2-core CPU next to other work.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from factlab.data import CharCorruptionDataset, NameDataset
from factlab.model import GPT, GPTConfig
from factlab.synthetic import generate
from factlab.train import TrainConfig, train

# For importing the benchmark *scripts* by module name (test_benchmarks and test_docs call their main()); the
# course's reference code they and the tests share is a module of the package, factlab.course_reference.
sys.path.append(str(Path(__file__).resolve().parent.parent / "benchmarks"))

torch.set_num_threads(1)  # keep CPU use modest, and make training bit-for-bit repeatable

BLOCK = 64  # the tiny models' block size: long enough for every synthetic question + answer
TINY = dict(n_layer=2, n_head=2, n_embd=32)


def tiny_corpus(seed: int = 0, n_people: int = 60):
    return generate(seed=seed, n_people=n_people)


@pytest.fixture(scope="session")
def corpus():
    return tiny_corpus()


@pytest.fixture()
def corpus_files(corpus, tmp_path):
    """The corpus written as wiki.txt, birth_places_train.tsv, birth_dev.tsv, birth_test_inputs.tsv."""
    return corpus.write(tmp_path / "data")


@pytest.fixture(scope="session")
def pretrain_ds(corpus):
    return CharCorruptionDataset(corpus.wiki, BLOCK, seed=0)


@pytest.fixture(scope="session")
def vocab(pretrain_ds):
    return pretrain_ds.vocab


@pytest.fixture(scope="session")
def finetune_ds(pretrain_ds, corpus):
    return NameDataset(pretrain_ds, corpus.train)


@pytest.fixture()
def step_clock(monkeypatch):
    """The trainer's clock advances 10 ms each time it is read (about once a step), so a time-limited run takes
    the same steps however busy the machine is."""
    from types import SimpleNamespace

    from factlab import train

    ticks = iter(range(10**9))
    monkeypatch.setattr(train, "time", SimpleNamespace(perf_counter=lambda: 0.01 * next(ticks)))


def tiny_config(vocab_size: int, variant: str = "vanilla", **overrides) -> GPTConfig:
    options = {"block_size": BLOCK, **TINY, "variant": variant, "dropout": 0.0}
    if variant == "perceiver":
        options["bottleneck_dim"] = 8
    options.update(overrides)
    return GPTConfig(vocab_size=vocab_size, **options)


def make_model(config: GPTConfig, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(config)


def quick_train(model: GPT, dataset, epochs: int = 2, batch_size: int = 16, lr: float = 3e-3,
                seed: int = 0, on_step=None, **overrides):
    """A few optimizer steps with a short warmup: enough to move a tiny model away from its initialisation."""
    config = TrainConfig(max_epochs=epochs, batch_size=batch_size, learning_rate=lr,
                         warmup_tokens=batch_size * model.config.block_size, final_tokens=10**9, seed=seed,
                         **overrides)
    return train(model, dataset, config, progress=False, on_step=on_step)
