"""Exact match split by question length: among the questions whose text and ⁇ fit in the first --at characters
of the model's input, and among the longer ones. The course's perceiver reads only its first m = 32 characters
(its latent i reads inputs up to i), so on a longer question it answers without the end of the person's name.

    python benchmarks/answer_start.py --questions $D/birth_dev.tsv results/course-perceiver/perceiver.pretrain.dev.predictions \
        results/course-vanilla/vanilla.pretrain.dev.predictions

Prints a markdown table, one row per predictions file: correct/total and the 95% Wilson interval in each group."""

from __future__ import annotations

import argparse

from factlab import FactlabError
from factlab.data import parse_questions
from factlab.evaluate import read_predictions
from factlab.io import read_text
from factlab.statistics import wilson_interval


def fits(question: str, at: int) -> bool:
    """Whether the question and the ⁇ after it are among the first `at` characters: the first answer character is
    then predicted from a position that every variant reads whole."""
    return len(question) + 1 <= at


def groups(questions, predictions: list[str], at: int) -> dict[bool, tuple[int, int]]:
    """(correct, total) among the questions that fit in `at` characters (True) and the others (False)."""
    out = {True: (0, 0), False: (0, 0)}
    for q, p in zip(questions, predictions):
        key = fits(q.question, at)
        out[key] = (out[key][0] + (p == q.answer), out[key][1] + 1)
    return out


def cell(correct: int, total: int) -> str:
    if not total:
        return "–"
    lo, hi = wilson_interval(correct, total)
    return f"{correct}/{total} = {100 * correct / total:.1f}% ({100 * lo:.1f}–{100 * hi:.1f}%)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", nargs="+", help="predictions files, one answer a line, in the questions' order")
    parser.add_argument("--questions", required=True, help="the questions with their answers, birth_dev.tsv")
    parser.add_argument("--at", type=int, default=32, help="the split: question + ⁇ within this many characters "
                        "(default 32, the course perceiver's m)")
    args = parser.parse_args(argv)
    try:
        questions = parse_questions(read_text(args.questions), args.questions)
        rows = [groups(questions, read_predictions(p, len(questions)), args.at) for p in args.predictions]
    except FactlabError as e:
        raise SystemExit(f"answer_start: {e}") from None
    print(f"| predictions | question + ⁇ within {args.at} characters | longer |")
    print("| --- | --- | --- |")
    for path, row in zip(args.predictions, rows):
        print(f"| {path} | {cell(*row[True])} | {cell(*row[False])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
