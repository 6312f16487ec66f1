"""factlab.decode: the batched, cached greedy decoder gives exactly the answers of the course's one-by-one loop."""

from __future__ import annotations

import pytest
import torch

from conftest import make_model, quick_train, tiny_config
from factlab.decode import (MAX_ANSWER_CHARS, Scored, answer_from, answer_one_by_one, answer_questions,
                            next_token_probs, prompt_ids)
from factlab.model import GPT

MASK = "\u2047"
VARIANTS = ["vanilla", "synthesizer", "perceiver", "rope"]


@pytest.fixture(scope="module", params=VARIANTS)
def trained(request, finetune_ds, vocab):
    """A tiny model of each variant trained for ~40 steps on the synthetic finetuning set: its answers differ
    from question to question and are usually closed by ⁇ before MAX_ANSWER_CHARS."""
    model = make_model(tiny_config(len(vocab), request.param))
    result = quick_train(model, finetune_ds, epochs=14, batch_size=16)
    assert result.steps >= 30
    return model.eval()


@pytest.fixture(scope="module")
def prompts(corpus, vocab):
    """~40 prompts of many lengths: training, dev and test questions, and fragments of them."""
    questions = [line.split("\t")[0] for line in (corpus.train + corpus.dev + corpus.test_inputs).splitlines()]
    questions = questions[:24] + questions[-4:]
    fragments = ["W", "Where", "Where was", "born?", "Where was Od", " ", "Where was Ta Ve Lo Ca Be Ni born?",
                 questions[0][:-1], questions[1] + " born?"]
    return [prompt_ids(vocab, q) for q in questions + fragments]


@pytest.fixture(scope="module")
def reference(trained, vocab, prompts):
    """The course-style answers (one question at a time, full recomputation), computed once per model."""
    return answer_one_by_one(trained, vocab, prompts)


def truncated_copy(model: GPT, block_size: int) -> GPT:
    """The same trained weights in a model with a smaller block size (pos_emb, w2, b2 cut to the new size)."""
    small = GPT(tiny_config(model.config.vocab_size, model.config.variant, block_size=block_size))
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "pos_emb":
            tensor = tensor[:, :block_size]
        elif name.endswith("attn.w2"):
            tensor = tensor[..., :block_size]
        elif name.endswith("attn.b2"):
            tensor = tensor[:block_size]
        state[name] = tensor
    small.load_state_dict(state)
    return small.eval()


@pytest.mark.parametrize("batch_size", [512, 7, 1])
def test_batched_equals_one_by_one(trained, vocab, prompts, reference, batch_size):
    """answer_questions == answer_one_by_one for every prompt, whatever the batch size."""
    assert answer_questions(trained, vocab, prompts, batch_size=batch_size) == reference
    assert len(set(reference)) > 3, "the trained model should give different answers to different questions"
    assert any(len(a) < MAX_ANSWER_CHARS for a in reference), "some answers should be closed by ⁇"
    assert all(MASK not in a for a in reference)


def test_small_max_chars(trained, vocab, prompts):
    """With a smaller answer budget both decoders stop at the same place."""
    reference = answer_one_by_one(trained, vocab, prompts, max_chars=3)
    assert answer_questions(trained, vocab, prompts, max_chars=3, batch_size=5) == reference
    assert all(len(a) <= 3 for a in reference)


def test_generation_hits_block_limit(trained, vocab, prompts):
    """With block_size 24 most prompts leave fewer than 32 positions: both decoders stop at the block limit,
    including prompts exactly block_size long (one step), and still agree."""
    small = truncated_copy(trained, 24)
    fitting = [p for p in prompts if len(p) <= 24]
    fitting += [p[:24] for p in prompts if len(p) > 24][:6] + [p[:23] for p in prompts if len(p) > 23][:3]
    reference = answer_one_by_one(small, vocab, fitting)
    assert answer_questions(small, vocab, fitting) == reference
    assert answer_questions(small, vocab, fitting, batch_size=4) == reference
    for prompt, answer in zip(fitting, reference):
        assert len(answer) <= 24 - len(prompt) + 1
        assert MASK not in answer


def test_empty_prompt_list(trained, vocab):
    assert answer_questions(trained, vocab, []) == [] == answer_one_by_one(trained, vocab, [])


def test_prompt_longer_than_block_size(trained, vocab):
    """A prompt the model cannot read whole is refused by both decoders (never silently cropped)."""
    small = truncated_copy(trained, 16)
    prompts = [prompt_ids(vocab, "Where was Odrel Vasketh born?"), prompt_ids(vocab, "Where?")]
    with pytest.raises(ValueError, match="longer than the block size"):
        answer_one_by_one(small, vocab, prompts)
    with pytest.raises(ValueError, match="longer than the block size"):
        answer_questions(small, vocab, prompts)


def test_answer_from_cuts_at_first_mask(vocab):
    """The answer is the text before the first ⁇, or everything when the model never closed it."""
    ids = vocab.encode("Paris") + [1] + vocab.encode("Oslo") + [1]
    assert answer_from(vocab, ids) == "Paris"
    assert answer_from(vocab, vocab.encode("Lisbon")) == "Lisbon"
    assert answer_from(vocab, [1]) == ""


def test_decoding_leaves_model_in_eval_and_unchanged(trained, vocab, prompts):
    """Decoding does not touch the weights (no_grad, eval mode)."""
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    answer_questions(trained, vocab, prompts[:5])
    assert not trained.training
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())


def test_non_float32_model(vocab, prompts):
    """A model in another precision decodes like the one-by-one loop in that precision."""
    model = make_model(tiny_config(len(vocab))).double().eval()
    assert answer_questions(model, vocab, prompts[:6]) == answer_one_by_one(model, vocab, prompts[:6])


def full_pass_scores(model: GPT, vocab, prompt: list[int], scored: Scored) -> tuple[float, float]:
    """log p(answer [+ ⁇]) and p(first token) from one full forward pass over prompt + answer (+ ⁇)."""
    targets = vocab.encode(scored.answer) + ([1] if scored.closed else [])
    sequence = prompt + targets
    with torch.no_grad():
        logits, _ = model(torch.tensor([sequence[:-1]]))
    logprobs = logits[0].double().log_softmax(-1)
    chosen = [logprobs[len(prompt) - 1 + i, t] for i, t in enumerate(targets)]
    return float(sum(chosen)), float(chosen[0].exp())


def test_scores_match_a_full_forward_pass(trained, vocab, prompts, reference):
    """with_scores gives the same answers, and each answer's log-probability (characters + closing ⁇) and
    first-character probability equal those of a full forward pass on prompt + answer + ⁇."""
    scored = answer_questions(trained, vocab, prompts, batch_size=7, with_scores=True)
    assert [s.answer for s in scored] == reference
    assert any(s.closed for s in scored)
    for prompt, s in zip(prompts, scored):
        logprob, first = full_pass_scores(trained, vocab, prompt, s)
        assert s.logprob == pytest.approx(logprob, abs=1e-4)
        assert s.first_char_prob == pytest.approx(first, abs=1e-5)
        assert s.logprob <= 0 and 0 < s.prob <= s.first_char_prob + 1e-6
        assert s.first_char_prob == pytest.approx(float(next_token_probs(trained, prompt).max()), abs=1e-5)


def test_scores_of_answers_cut_at_the_block_limit(trained, vocab, prompts):
    """Answers that hit the block limit are not closed: their log-probability covers the characters generated."""
    small = truncated_copy(trained, 24)
    fitting = [p[:24] for p in prompts if len(p) > 22][:6] + [p for p in prompts if len(p) <= 14]
    scored = answer_questions(small, vocab, fitting, with_scores=True)
    assert [s.answer for s in scored] == answer_one_by_one(small, vocab, fitting)
    assert not all(s.closed for s in scored)
    for prompt, s in zip(fitting, scored):
        logprob, _ = full_pass_scores(small, vocab, prompt, s)
        assert s.logprob == pytest.approx(logprob, abs=1e-4)
