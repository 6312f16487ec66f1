"""Greedy answers to questions: `question⁇` is the prompt, the answer is the text generated before the next ⁇.

`answer_questions` decodes a whole batch at once with a key/value cache: prompts are padded on the right, each
sequence writes its new token at its own position, and decoding stops as soon as every answer is closed (the
text after the closing ⁇ would be thrown away). `answer_one_by_one` is the course's loop (one question at a
time, full recomputation every step): the reference the batched decoder must match exactly.
"""

from __future__ import annotations

import torch

from .model import GPT, KVCache
from .vocab import MASK_CHAR, MASK_ID, PAD_ID, Vocab

MAX_ANSWER_CHARS = 32  # the course samples 32 characters after the prompt


def prompt_ids(vocab: Vocab, question: str, where: str = "question") -> list[int]:
    return vocab.encode(question + MASK_CHAR, where)


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
                     batch_size: int = 512) -> list[str]:
    """Greedy answers for all prompts, batched; similar lengths are batched together to keep padding small."""
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, answer in zip(chunk, _answer_batch(model, vocab, [prompts[i] for i in chunk], max_chars)):
            answers[i] = answer
    return answers


def _answer_batch(model: GPT, vocab: Vocab, prompts: list[list[int]], max_chars: int) -> list[str]:
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
    next_token = logits[rows, lengths - 1].argmax(-1)

    generated = torch.full((len(prompts), max(steps, default=0)), PAD_ID, dtype=torch.long, device=device)
    closed = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    limit = torch.tensor(steps, device=device)
    for step in range(generated.size(1)):
        generated[:, step] = next_token
        closed |= (next_token == MASK_ID) | (step + 1 >= limit)
        if bool(closed.all()):
            break
        position = (lengths + step).clamp(max=total - 1)  # sequences already closed keep writing harmlessly
        if cache is not None:
            cache.advance(position[:, None])
            logits, _ = model(next_token[:, None], cache=cache)
            next_token = logits[:, -1].argmax(-1)
        else:
            tokens[rows, position] = next_token
            logits, _ = model(tokens)
            next_token = logits[rows, position].argmax(-1)
    return [answer_from(vocab, generated[row, : steps[row]].tolist()) for row in range(len(prompts))]
