"""Exact-match scoring, the London baseline, abstention, predictions files (one answer a line, as the course
writes), and the paired comparison of two predictions files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import FactlabError
from .data import Question
from .io import read_text, write_text_atomic
from .statistics import mcnemar_exact, wilson_interval


@dataclass(frozen=True)
class Score:
    correct: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.total if self.total else 0.0

    def __str__(self) -> str:
        # The course's line, so scripts that parse it keep working.
        return f"Correct: {self.correct} out of {self.total}: {self.percent}%"


def score(questions: list[Question], predictions: list[str]) -> Score | None:
    """Exact match against the gold answers, or None when the file has no answers (test inputs)."""
    if len(questions) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(questions)} questions")
    if questions[0].answer is None:
        return None
    return Score(sum(q.answer == p for q, p in zip(questions, predictions)), len(questions))


ABSTAIN = "unknown"  # what the model answers when its confidence is below the --abstain_below threshold


@dataclass(frozen=True)
class Abstention:
    """Answers kept only when their probability reaches `threshold`; the others become "unknown"."""
    threshold: float
    total: int
    answered: int
    correct: int | None  # among the answered questions; None for a file without answers

    @property
    def coverage(self) -> float:
        return self.answered / self.total if self.total else 0.0

    @property
    def score(self) -> Score | None:
        """Exact match over all questions, abstentions counted as wrong."""
        return None if self.correct is None else Score(self.correct, self.total)

    def __str__(self) -> str:
        line = (f"Abstained on {self.total - self.answered} of {self.total} questions (answer probability < "
                f"{self.threshold:g}): answered {self.answered} (coverage {100 * self.coverage:.1f}%)")
        if self.correct is not None:
            accuracy = f"{100 * self.correct / self.answered:.1f}%" if self.answered else "undefined"
            line += f", {self.correct} correct, accuracy on answered {accuracy}"
        return line


def abstain(questions: list[Question], predictions: list[str], probs: list[float],
            threshold: float) -> tuple[list[str], Abstention]:
    """Replace the answers whose probability is below `threshold` by "unknown"."""
    keep = [p >= threshold for p in probs]
    correct = None
    if questions and questions[0].answer is not None:
        correct = sum(k and q.answer == p for q, p, k in zip(questions, predictions, keep))
    kept = [p if k else ABSTAIN for p, k in zip(predictions, keep)]
    return kept, Abstention(threshold, len(questions), sum(keep), correct)


def london_baseline(questions: list[Question]) -> list[str]:
    """The course's baseline: answer "London" to everything (the most frequent training answer)."""
    return ["London"] * len(questions)


def write_predictions(path: str | Path, predictions: list[str]) -> None:
    write_text_atomic(path, "".join(p + "\n" for p in predictions))


def read_predictions(path: str | Path, n_questions: int) -> list[str]:
    """A predictions file, one answer a line (an empty line is an empty answer); it must hold one a question."""
    lines = read_text(path).splitlines()
    if len(lines) != n_questions:
        raise FactlabError(f"{path}: {len(lines)} predictions for {n_questions} questions")
    return lines


@dataclass(frozen=True)
class Comparison:
    """Two predictions files scored on the same questions, question by question."""
    total: int
    both: int
    only_a: int
    only_b: int

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.only_a, self.only_b)

    def lines(self, a: str, b: str) -> list[str]:
        def accuracy(correct):
            low, high = wilson_interval(correct, self.total)
            return f"{correct}/{self.total} = {100 * correct / self.total:.1f}% ({100 * low:.1f}–{100 * high:.1f}%)"

        neither = self.total - self.both - self.only_a - self.only_b
        return [f"A {a}: {accuracy(self.both + self.only_a)}", f"B {b}: {accuracy(self.both + self.only_b)}",
                f"both right {self.both}, only A {self.only_a}, only B {self.only_b}, neither {neither}",
                f"exact McNemar test (two-sided): p = {self.p_value:.3g}, the chance of a split of the "
                f"{self.only_a + self.only_b} disagreements at least this uneven if A and B were equally good"]


def compare(questions: list[Question], a: list[str], b: list[str]) -> Comparison:
    right_a = [q.answer == p for q, p in zip(questions, a, strict=True)]
    right_b = [q.answer == p for q, p in zip(questions, b, strict=True)]
    return Comparison(len(questions), sum(x and y for x, y in zip(right_a, right_b)),
                      sum(x and not y for x, y in zip(right_a, right_b)),
                      sum(y and not x for x, y in zip(right_a, right_b)))


def report(score_or_none: Score | None, outputs_path: str | Path | None) -> str:
    if score_or_none is None:
        where = f"; predictions written to {outputs_path}" if outputs_path else ""
        return f"No gold birth places provided; nothing to score{where}"
    return str(score_or_none)
