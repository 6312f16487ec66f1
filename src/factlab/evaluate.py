"""Exact-match scoring, the London baseline, and predictions files (one answer a line, as the course writes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoint import write_text_atomic
from .data import Question


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


def london_baseline(questions: list[Question]) -> list[str]:
    """The course's baseline: answer "London" to everything (the most frequent training answer)."""
    return ["London"] * len(questions)


def write_predictions(path: str | Path, predictions: list[str]) -> None:
    write_text_atomic(path, "".join(p + "\n" for p in predictions))


def report(score_or_none: Score | None, outputs_path: str | Path | None) -> str:
    if score_or_none is None:
        where = f"; predictions written to {outputs_path}" if outputs_path else ""
        return f"No gold birth places provided; nothing to score{where}"
    return str(score_or_none)
