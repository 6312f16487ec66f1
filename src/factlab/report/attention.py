"""The model side of the report's attention maps: a run's checkpoint loaded, its greedy answer to one question in
the checkpoint's answer format, and the attention weights over what it had read when it closed that answer."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import FactlabError, checkpoint
from ..experiment import ModelOptions, load_model
from ..formats import AnswerFormat, checkpoint_format
from ..model import GPT, GPTConfig
from ..vocab import Vocab
from .runs import Run, RunDir


@dataclass(frozen=True)
class Attention:
    config: GPTConfig
    answer_format: AnswerFormat
    answer: str  # the greedy answer
    chars: str  # what the model read, one character a position: its prompt (and recitation), ⁇, the answer
    maps: list[tuple[str, torch.Tensor]]  # (module, weights (1, heads, queries, keys)), as GPT.attention_maps


def load_checkpoint(run_dir: RunDir, run: Run) -> tuple[GPT, Vocab]:
    path = run_dir.path / run.row["params"]
    header = checkpoint.read_config(path)
    if header is not None:
        model, _ = checkpoint.load(path, header[0], header[1])
        vocab = header[1]
    else:  # a course .params file: the vocabulary comes from the pretraining corpus
        if run_dir.corpus_path is None:
            raise FactlabError(f"{path}: a course checkpoint needs \"corpus_path\" in results.json for its vocabulary")
        model, corpus = load_model(path, run.row["variant"], run_dir.corpus_path, ModelOptions())
        vocab = corpus.vocab
    return model.eval(), vocab


def attention(run_dir: RunDir, run: Run, question: str) -> Attention:
    model, vocab = load_checkpoint(run_dir, run)
    fmt = checkpoint_format(run_dir.path / run.row["params"])
    prompt = fmt.prompt(vocab, question, "--question", model.config.block_size)
    decoded = fmt.decode(model, vocab, [prompt])
    answer = decoded.answers[0]
    ids = (decoded.read[0] + vocab.encode(answer, "answer"))[: model.config.block_size]
    return Attention(model.config, fmt, answer, vocab.decode(ids), model.attention_maps(torch.tensor([ids])))
