"""Greedy decoding: a prompt's answer is the text generated after it before the next ⁇; for the course's
questions the prompt is `question⁇` (`prompt_ids`). What an answer format reads and writes is formats.py's.

`answer_questions` decodes a whole batch at once with a key/value cache: prompts are padded on the right, each
sequence writes its new token at its own position, and decoding stops as soon as every answer is closed (the
text after the closing ⁇ would be thrown away). `answer_one_by_one` is the course's loop (one question at a
time, full recomputation every step): the reference the batched decoder must match exactly.

With `with_scores=True` the same decoder also returns, per question, how sure the model was of its answer
(`Scored`): the log-probability of the answer characters *and* of the closing ⁇ (the ⁇ is what makes the answer
complete: without it "Paris" would also be a prefix of "Parisville"), and the probability of the first character.
The answers are the same either way; only the log-softmax of the chosen tokens is added to the loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import GPT, KVCache
from .vocab import MASK_CHAR, MASK_ID, PAD_ID, Vocab

MAX_ANSWER_CHARS = 32  # the course samples 32 characters after the prompt


def prompt_ids(vocab: Vocab, question: str, where: str = "question") -> list[int]:
    return vocab.encode(question + MASK_CHAR, where)


@dataclass(frozen=True)
class Scored:
    """A greedy answer with the model's confidence in it.

    logprob: sum of log p(token) over the answer's characters and the closing ⁇ (if the answer was not closed
    within the character budget, over the answer's characters only, and `closed` is False).
    first_char_prob: p(first generated token), which is the ⁇ itself for an empty answer.
    """
    answer: str
    logprob: float
    first_char_prob: float
    closed: bool

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)


def answer_from(vocab: Vocab, generated: list[int]) -> str:
    """The text before the first ⁇, or everything if the model never closed its answer (as in the course)."""
    return vocab.decode(generated).split(MASK_CHAR)[0]


def steps_for(model: GPT, prompt_len: int, max_chars: int) -> int:
    # A token at position block_size - 1 is the last one the model can be fed, so it predicts position block_size.
    return max(0, min(max_chars, model.config.block_size - prompt_len + 1))


def check_fits(model: GPT, prompts: list[list[int]]) -> None:
    if any(len(p) > model.config.block_size for p in prompts):
        raise ValueError(f"a prompt is longer than the block size {model.config.block_size}")


@torch.no_grad()
def answer_one_by_one(model: GPT, vocab: Vocab, prompts: list[list[int]], max_chars: int = MAX_ANSWER_CHARS) -> list[str]:
    model.eval()
    device = next(model.parameters()).device
    answers = []
    check_fits(model, prompts)
    for prompt in prompts:
        x = torch.tensor([prompt], device=device)
        generated = []
        for _ in range(steps_for(model, len(prompt), max_chars)):
            logits, _ = model(x)
            token = logits[0, -1].argmax()
            generated.append(int(token))
            x = torch.cat([x, token.view(1, 1)], dim=1)
        answers.append(answer_from(vocab, generated))
    return answers


@torch.no_grad()
def answer_questions(model: GPT, vocab: Vocab, prompts: list[list[int]], max_chars: int = MAX_ANSWER_CHARS,
                     batch_size: int | None = None, with_scores: bool = False) -> list[str] | list[Scored]:
    """Greedy answers for all prompts, batched; similar lengths are batched together to keep padding small.
    With `with_scores`, a `Scored` per prompt (same answers, plus their probabilities) instead of strings.

    The default batch is 64 questions on a CPU, 512 on a GPU: a CPU gains nothing from wider matmuls, while a
    smaller batch stops as soon as its own answers are closed and pads less (benchmarks/README.md measures it)."""
    model.eval()
    if batch_size is None:
        batch_size = 512 if next(model.parameters()).is_cuda else 64
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = _answer_batch(model, vocab, [prompts[i] for i in chunk], max_chars, with_scores)
        for i, answer in zip(chunk, batch):
            answers[i] = answer
    return answers


@torch.no_grad()
def token_logprobs(model: GPT, sequences: list[list[int]], starts: list[int], batch_size: int = 64
                   ) -> list[list[float]]:
    """log p(token) of each token of each sequence from index `start` on, given the tokens before it."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for lo in range(0, len(sequences), batch_size):
        chunk = sequences[lo : lo + batch_size]
        tokens = torch.full((len(chunk), max(len(s) for s in chunk)), PAD_ID, dtype=torch.long, device=device)
        for row, seq in enumerate(chunk):
            tokens[row, : len(seq)] = torch.tensor(seq, device=device)
        logprobs = F.log_softmax(model(tokens)[0].double(), -1)
        for row, (seq, start) in enumerate(zip(chunk, starts[lo : lo + batch_size])):
            out.append([float(logprobs[row, i - 1, seq[i]]) for i in range(max(1, start), len(seq))])
    return out


@torch.no_grad()
def next_token_probs(model: GPT, prompt: list[int]) -> torch.Tensor:
    """p(next token | prompt), a (vocab,) tensor: what the first character of the answer could be."""
    model.eval()
    check_fits(model, [prompt])
    device = next(model.parameters()).device
    logits, _ = model(torch.tensor([prompt], device=device))
    return logits[0, -1].float().softmax(-1).cpu()


def _answer_batch(model: GPT, vocab: Vocab, prompts: list[list[int]], max_chars: int,
                  with_scores: bool = False) -> list[str] | list[Scored]:
    device = next(model.parameters()).device
    check_fits(model, prompts)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    steps = [steps_for(model, len(p), max_chars) for p in prompts]
    total = min(model.config.block_size, max(len(p) + s for p, s in zip(prompts, steps)))
    tokens = torch.full((len(prompts), total), PAD_ID, dtype=torch.long, device=device)
    for row, p in enumerate(prompts):
        tokens[row, : len(p)] = torch.tensor(p, device=device)
    rows = torch.arange(len(prompts), device=device)

    dtype = next(model.parameters()).dtype
    cache = KVCache(model.config, len(prompts), total, device, dtype) if model.supports_kv_cache else None
    if cache is not None:
        width = int(lengths.max())
        cache.advance(torch.arange(width, device=device).expand(len(prompts), -1))
        logits, _ = model(tokens[:, :width], cache=cache)
    else:
        logits, _ = model(tokens)
    step_logits = logits[rows, lengths - 1]
    next_token = step_logits.argmax(-1)

    generated = torch.full((len(prompts), max(steps, default=0)), PAD_ID, dtype=torch.long, device=device)
    closed = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    limit = torch.tensor(steps, device=device)
    if with_scores:
        logprob = torch.zeros(len(prompts), dtype=torch.float64, device=device)
        first_prob = torch.zeros(len(prompts), dtype=torch.float64, device=device)
        mask_closed = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    for step in range(generated.size(1)):
        generated[:, step] = next_token
        if with_scores:  # the chosen token's log-probability counts until (and including) the closing ⁇
            chosen = F.log_softmax(step_logits.double(), -1)[rows, next_token]
            logprob += torch.where(closed, torch.zeros_like(chosen), chosen)
            if step == 0:
                first_prob = chosen.exp()
            mask_closed |= ~closed & (next_token == MASK_ID)
        closed |= (next_token == MASK_ID) | (step + 1 >= limit)
        if bool(closed.all()):
            break
        position = (lengths + step).clamp(max=total - 1)  # sequences already closed keep writing harmlessly
        if cache is not None:
            cache.advance(position[:, None])
            logits, _ = model(next_token[:, None], cache=cache)
            step_logits = logits[:, -1]
        else:
            tokens[rows, position] = next_token
            logits, _ = model(tokens)
            step_logits = logits[rows, position]
        next_token = step_logits.argmax(-1)
    answers = [answer_from(vocab, generated[row, : steps[row]].tolist()) for row in range(len(prompts))]
    if not with_scores:
        return answers
    return [Scored(a, float(lp), float(fp), bool(c))
            for a, lp, fp, c in zip(answers, logprob.tolist(), first_prob.tolist(), mask_closed.tolist())]
