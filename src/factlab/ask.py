"""`factlab ask`: one question (or each line of stdin) answered with its probability, the likeliest
alternatives, and what the pretraining corpus says about the person."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from . import FactlabError, experiment
from .data import CorpusIndex, question_name
from .decode import MAX_ANSWER_CHARS, Scored, answer_questions, next_token_probs
from .formats import checkpoint_format
from .io import read_text
from .vocab import MASK_CHAR, MASK_ID, PAD_CHAR


@dataclass(frozen=True)
class Asked:
    question: str
    name: str | None
    answer: Scored
    alternatives: list[tuple[str, float, bool]]  # (answer, probability, in the person's document), likeliest first
    documents: list[str]
    name_in_corpus: bool
    places_in_doc: list[str]  # known places (training answers) named in the person's documents
    recitation: str | None = None  # what a recite model wrote after "NAME." before answering


def alternatives(model, vocab, prompt: list[int], k: int) -> list[tuple[str, float]]:
    """The k most probable first characters, each continued greedily: (answer, p(first) · p(rest and ⁇))."""
    probs = next_token_probs(model, prompt)
    top = probs.topk(min(k, len(probs)))
    out, branches = [], []
    for p, token in zip(top.values.tolist(), top.indices.tolist()):
        if token == MASK_ID:
            out.append(("", p))  # the answer is closed at once: empty
        elif len(prompt) + 1 <= model.config.block_size:
            branches.append((p, token))
    if branches:
        continued = answer_questions(model, vocab, [prompt + [t] for _, t in branches],
                                     max_chars=MAX_ANSWER_CHARS - 1, with_scores=True)
        out += [(vocab.decode([t]) + c.answer, p * c.prob) for (p, t), c in zip(branches, continued)]
    return sorted(out, key=lambda a: -a[1])


class Asker:
    """A loaded model and corpus, answering one question at a time."""

    def __init__(self, corpus_path, reading_params_path, variant: str | None, options, device: str = "auto",
                 train_corpus_path=None):
        variant = variant or experiment.checkpoint_variant(reading_params_path)
        self.model, corpus = experiment.load_model(reading_params_path, variant, corpus_path, options)
        self.model.to(experiment.resolve_device(device))
        self.vocab, self.variant = corpus.vocab, variant
        self.answer_format = checkpoint_format(reading_params_path)
        self.index = CorpusIndex(read_text(corpus_path))
        self.places = []
        if train_corpus_path is not None:
            train = experiment.read_questions(train_corpus_path, require_answers=True)
            self.places = sorted({q.answer for q in train}, key=lambda p: (-len(p), p))

    def ask(self, question: str, k: int = 5) -> Asked:
        question = question.strip()
        if not question:
            raise FactlabError("empty question")
        for special in (PAD_CHAR, MASK_CHAR):
            if special in question:
                raise FactlabError(f"question: contains the reserved character {special!r}")
        prompt = self.answer_format.prompt(self.vocab, question, "question", self.model.config.block_size)
        decoded = self.answer_format.decode(self.model, self.vocab, [prompt], with_scores=True)
        answer = decoded.answers[0]
        recitation = decoded.recitations[0] if decoded.recitations is not None else None
        name = question_name(question)
        docs = self.index.documents_of(name)
        places = [p for p in self.places if self.index.place_in_documents(p, name)]
        places = [p for p in places if not any(p != q and p in q for q in places)]  # "York" inside "New York"
        others = [(text, p, self.index.place_in_documents(text, name))
                  for text, p in alternatives(self.model, self.vocab, decoded.read[0], k)]  # after any recitation
        return Asked(question, name, answer, others, docs, self.index.mentions(name), places, recitation)


def format_asked(a: Asked, corpus_name: str) -> str:
    s = a.answer
    lines = [a.question] + ([f"  recitation: {a.name}.{a.recitation}"] if a.recitation is not None else [])
    of = " (of the place, recited and answered)" if a.recitation is not None else ""
    lines.append(f"  answer: {s.answer or '(empty)'}   probability{of} {s.prob:.4g} (first character "
                 f"{s.first_char_prob:.4g})" + ("" if s.closed else f"; not closed by ⁇ within {MAX_ANSWER_CHARS} "
                                                                     "characters"))
    after = " after the recitation" if a.recitation is not None else ""
    lines.append(f"  alternatives ({len(a.alternatives)} likeliest first characters{after}, each continued greedily):")
    for text, p, in_doc in a.alternatives:
        where = "   [in the person's document]" if in_doc else ""
        lines.append(f"    {p:8.4g}  {text or '(empty)'}{where}")
    if a.name is None:
        lines.append("  corpus: not a 'Where was NAME born?' question; no corpus lookup")
    elif not a.name_in_corpus:
        lines.append(f"  corpus: {a.name!r} does not occur in {corpus_name}")
    else:
        lines.append(f"  corpus: {a.name!r} occurs in {corpus_name}; {len(a.documents)} document(s) start with it")
        for doc in a.documents:
            lines.append(f"    {doc[:160] + ('…' if len(doc) > 160 else '')}")
        if a.places_in_doc:
            lines.append("  places of the training answers named there: " + ", ".join(a.places_in_doc))
    return "\n".join(lines)


def run_ask(corpus_path, reading_params_path, question: str | None, variant: str | None, options,
            device: str = "auto", train_corpus_path=None, k: int = 5, stdin=None, out=print) -> int:
    """Answer one question, or every line of stdin until EOF (a bad line prints one error and is skipped).
    Returns the exit status: 0, or 2 if some question of stdin could not be asked."""
    if k < 1:
        raise FactlabError(f"--top_k {k}: give at least 1 alternative")
    asker = Asker(corpus_path, reading_params_path, variant, options, device, train_corpus_path)
    corpus_name = Path(corpus_path).name
    if question is not None:
        out(format_asked(asker.ask(question, k), corpus_name))
        return 0
    stdin = stdin or sys.stdin
    interactive = stdin.isatty()
    status = 0
    while True:
        if interactive:
            print("question> ", end="", file=sys.stderr, flush=True)
        line = stdin.readline()
        if not line:
            return status
        if not line.strip():
            continue
        try:
            out(format_asked(asker.ask(line, k), corpus_name))
        except FactlabError as err:
            print(f"factlab: error: {err}", file=sys.stderr)
            status = 2
