"""What the model knows: the per-answer records of `factlab analyze`, their summary, and its JSON (`factlab ask`,
one question at a time, is ask.py).

`factlab analyze` answers an evaluation file greedily (the answers `factlab evaluate` gives) with the decoder's
probabilities, and looks each person up in the pretraining corpus.

Definitions
-----------
- **name**: X in a question of the form "Where was X born?" (None for any other question).
- **the person's documents**: the lines of wiki.txt that start with "X." (the name followed by a period, as every
  biography begins). Names repeat (20 names begin two lines of the real wiki.txt, one of them a dev name): all
  such lines count, so a place "occurs in the person's document" when it occurs in any of them. Occurrences of the
  name itself are removed before looking for a place, so "London" is not found in "Jack London. ...".
- **name_in_corpus**: X occurs anywhere in wiki.txt (not only as a document title).
- **place in document**: the exact string (case-sensitive substring) occurs in the document; an empty answer
  occurs nowhere.
- **confidence**: the probability of the greedy answer, p(answer characters and the closing ⁇ | question ⁇);
  for a model finetuned to recite (`--answer_format recite`), the probability of writing the place twice:
  p(the recitation's last len(answer) characters | what precedes them) · p(answer and ⁇ | NAME. recitation ⁇)
  (`formats.recite_then_answer`; each format's `confidence` says it in words).
  **first_char_prob**: the probability of its first character (of the ⁇ for an empty answer).
- **recitation** (recite models only): the biography the model wrote after "NAME." before answering;
  **gold_in_recitation**: the gold place occurs in it.
- **nearest training name**: the training name with the highest Jaccard similarity of character trigram sets,
  computed on " x " (lowercased, one space each side); ties go to the earlier line of the training file.
- **nearest-name hypothesis**: a model that does not know a person answers with the birthplace of the most
  similar training name. Observed: the share of wrong answers equal to the nearest training name's answer.
  Two baselines for the same share, with one-sided p-values:
  (a) `expected_train_frequencies`: wrong answers drawn independently from the training answer frequencies,
      mean over the questions of f_train(nearest answer); p-value from the exact Poisson-binomial tail;
  (b) `expected_permutation`: the model's own wrong answers shuffled among the same questions (keeps how often
      it says each place), exact expectation; p-value from 10,000 seeded permutations (`statistics.match_test`).
- **recall** (with `--recall_params_path PRETRAINED`): does the pretrained model, reading the person's
  document up to the first occurrence of the gold place (name occurrences skipped, the first document where
  prompt and place fit in the block), continue it greedily with exactly that place? `recall_probed` is False when
  no document has the place early enough; `recalled` is then null. It tells facts the pretraining stored from
  facts it did not, so accuracy split by it says whether finetuning reaches what the model knows.
- **risk–coverage**: questions sorted by confidence, highest first (ties in file order); for k = 1..n,
  coverage k/n and accuracy among the top k. AURC is the mean risk (1 - accuracy) over those n coverages;
  a random order gives 1 - accuracy_full in expectation (`aurc_random`), the best order `aurc_oracle`.
  `accuracy_at_50` is the accuracy among the ceil(n/2) most confident answers, and `threshold_at_50` the
  confidence of the last of them (`factlab evaluate --abstain_below` that value answers that half, ties apart).
  `accuracy_at_50_best` is what the best order gives there, min(correct, ceil(n/2)) / ceil(n/2), and
  `correct_in_top_half` how many correct answers the confidence ranks in that half. While accuracy is at most
  50%, accuracy at 50% coverage is at most twice the full accuracy, with equality only when every correct answer
  is in the confident half (`statistics.risk_coverage`).
- **calibration**: the reliability diagram's 10 equal-width confidence bins (how many answers, their mean
  confidence, their accuracy) and the expected calibration error, ECE = Σ (n_bin / n) |accuracy − confidence|.
  `--calibrate_on OTHER.analysis.json` fits Platt scaling, sigmoid(a · logit(p) + b), to the confidence and
  correctness of OTHER's records (a model's answers to a validation split, never to the questions analysed) and
  reports the same for the calibrated confidences. It keeps the answers' order, so risk–coverage is unchanged.
- **exposures** (with `--recall_params_path PRETRAINED`): how many of the pretraining's draws of the person's
  biography held the gold place, in expectation: the pretrained checkpoint's epochs times the chance that one draw
  under its objective holds the document up to the place's first mention (`data.chance_draw_holds`; span
  corruption's random truncation drops a late place from most draws, the course's 7/8 of a block from all).
  Questions mixed into pretraining are not counted: they are the training people's, never the scored ones'.
  Part 3.3 of "Physics of Language Models" measures capacity at about 100 and 1,000 exposures per fact, hence the
  bins of `by_exposures`.

JSON written by `factlab analyze --outputs_path OUT.analysis.json` (schema "factlab-analysis-1")
-----------------------------------------------------------------------------------------------
{
  "schema": "factlab-analysis-1",
  "meta": {"variant", "checkpoint", "corpus_path", "eval_corpus_path", "train_corpus_path" (or null),
           "recall_checkpoint" (or null),
           "n_questions", "document_rule", "similarity"},
  "records": [  # one per question, in file order
    {"question": str, "name": str | null, "gold": str, "prediction": str, "correct": bool,
     "confidence": float, "logprob": float, "first_char_prob": float, "closed": bool (answer ended by ⁇),
     "name_in_corpus": bool, "n_documents": int, "gold_in_doc": bool, "prediction_in_doc": bool,
     "prediction_in_train_answers": bool | null,
     "nearest_train_name": str | null, "nearest_train_answer": str | null, "nearest_similarity": float | null,
     "recall_probed": bool, "recalled": bool | null,  # these three only with --recall_params_path
     "exposures": float | null,  # null: the biography never names the gold place
     "recitation": str, "gold_in_recitation": bool,   # these two only for a recite model
     "calibrated_confidence": float}                  # only with --calibrate_on
  ],
  "summary": {
    "n": int, "correct": int, "accuracy": float,                       # accuracies are fractions in [0, 1]
    "by": {"name_in_corpus" | "gold_in_doc" | "prediction_in_doc" | "recalled" (over probed questions only)
           | "gold_in_recitation" (recite models only):
           {"true": {"n", "correct", "accuracy" (null when n = 0)}, "false": {...}}},
    "confidence": {"mean_correct", "mean_wrong", "median"},              # null when empty
    "distinct_predictions": int,
    "frequent_predictions": [[place, count], ...],                       # 10 most frequent answers
    "frequent_wrong_answers": [[place, count], ...],                     # 10 most frequent wrong answers
    "wrong_in_train_answers": int | null,  # wrong answers that are some training answer
    "nearest_name": null without a training file, else
      {"similarity": str,
       "wrong": {"n", "matches", "rate", "expected_train_frequencies", "p_value_train_frequencies",
                 "expected_permutation", "p_value_permutation", "permutations"},
       "all": {same keys, over every question with a nearest name}},
    "calibration": {"bins": 10, "ece": float, "reliability": [{"low", "high", "n", "confidence", "accuracy"}],
                    "platt": null, or with --calibrate_on {"a", "b", "fitted_on", "n"}, and then also
                    "ece_calibrated": float, "reliability_calibrated": [...]}
  },
  "risk_coverage": {"coverage": [float] * n, "accuracy": [float] * n, "aurc": float, "aurc_random": float,
                    "aurc_oracle": float, "accuracy_at_50": float, "accuracy_full": float,
                    "threshold_at_50": float, "accuracy_at_50_best": float, "correct_in_top_half": int}
}
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from . import FactlabError, checkpoint, experiment
from .data import (MIX_SPAN_SHARE, CorpusIndex, Question, chance_draw_holds, longest_span_draw, question_name,
                   salient_spans)
from .decode import Scored, answer_questions
from .formats import DIRECT, FORMATS, RECITE, checkpoint_format
from .io import read_json, read_text, write_text_atomic
from .statistics import (CALIBRATION_BINS, Platt, expected_calibration_error, match_test, mean_or_none, proportion,
                         reliability, risk_coverage)

SCHEMA = "factlab-analysis-1"
DOCUMENT_RULE = "the wiki.txt lines that start with 'NAME.'; a place occurs if it occurs in any of them"
SIMILARITY = "Jaccard similarity of character trigram sets of ' name ' (lowercased)"
TOP = 10


def trigrams(name: str) -> frozenset[str]:
    padded = f" {name.lower()} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


class NearestName:
    """The most similar training name (character trigram Jaccard) and its answer, via an inverted index."""

    def __init__(self, names: list[str], answers: list[str]):
        self.names, self.answers = names, answers
        self.grams = [trigrams(n) for n in names]
        self.postings: dict[str, list[int]] = defaultdict(list)
        for i, grams in enumerate(self.grams):
            for g in grams:
                self.postings[g].append(i)

    def nearest(self, name: str) -> tuple[str, str, float] | None:
        grams = trigrams(name)
        shared = Counter(i for g in grams for i in self.postings.get(g, ()))
        if not shared:
            return None
        best = max(shared, key=lambda i: (shared[i] / (len(grams) + len(self.grams[i]) - shared[i]), -i))
        similarity = shared[best] / (len(grams) + len(self.grams[best]) - shared[best])
        return self.names[best], self.answers[best], similarity


# ---------------------------------------------------------------- recall by the pretrained model


def recall_prompt(index: CorpusIndex, name: str | None, place: str, block_size: int) -> str | None:
    """The person's document up to the first occurrence of `place` (not inside the name), from the first of
    their documents where that prefix and the place fit in the block; None if there is none."""
    found = index.place_in_document(name, place, block_size)
    return found[0][: found[1]] if found else None


def biography_recall(model, vocab, index: CorpusIndex, questions: list[Question]) -> list[bool | None]:
    """Per question: whether `model` continues the person's biography prefix (`recall_prompt`) greedily with
    exactly the gold place; None where there is no such prefix. One batched greedy decoding for all."""
    probes = []
    for k, q in enumerate(questions):
        name = question_name(q.question)
        text = recall_prompt(index, name, q.answer or "", model.config.block_size) if name else None
        if text is not None:
            probes.append((k, vocab.encode(text, f"wiki.txt, the document of {name}"), q.answer))
    recalled: list[bool | None] = [None] * len(questions)
    if probes:
        longest = max(len(place) for _, _, place in probes)
        continued = answer_questions(model, vocab, [ids for _, ids, _ in probes], max_chars=longest)
        for (k, _, place), text in zip(probes, continued):
            recalled[k] = text.startswith(place)
    return recalled


def pretraining_exposures(index: CorpusIndex, questions: list[Question], pretrained_info: dict, block_size: int
                          ) -> list[float | None]:
    """Per question: the expected number of pretraining draws that held the gold place (the module docstring's
    **exposures**), from the pretrained checkpoint's info (its objective and epochs); None where no document of
    the person names the place."""
    pretraining = pretrained_info.get("pretraining", {})
    objective, span_share = pretraining.get("objective", "span"), pretraining.get("span_share", MIX_SPAN_SHARE)
    salient_share = pretraining.get("salient_share", 0.0)
    epochs = pretrained_info["result"]["epochs_done"]
    counts: list[float | None] = []
    for q in questions:
        found = index.place_in_document(question_name(q.question), q.answer or "", 10**9)
        if found is None:
            counts.append(None)
            continue
        salient = bool(salient_spans(found[0], longest_span_draw(block_size)))
        counts.append(round(epochs * chance_draw_holds(found[1] + len(q.answer), block_size, objective,
                                                       span_share, salient_share, salient), 1))
    return counts


def median_exposures(counts: list[float | None]) -> float | None:
    """The median of `pretraining_exposures`'s counts over the facts a biography holds (None: no such fact)."""
    seen = [c for c in counts if c is not None]
    return float(np.median(seen)) if seen else None


EXPOSURE_BINS = (100, 1000)  # Part 3.3's milestones: about 1 bit per parameter at 100 exposures, 2 at 1,000


def exposure_summary(records: list[dict]) -> dict:
    """The median exposures of the facts the biographies hold, how many were never in a draw, and the recall
    (over probed questions) and accuracy by exposure bin."""
    seen = [r["exposures"] for r in records if r["exposures"] is not None]
    bins = {"0": lambda e: e == 0, f"<{EXPOSURE_BINS[0]}": lambda e: 0 < e < EXPOSURE_BINS[0],
            f"{EXPOSURE_BINS[0]}-{EXPOSURE_BINS[1]}": lambda e: EXPOSURE_BINS[0] <= e < EXPOSURE_BINS[1],
            f">={EXPOSURE_BINS[1]}": lambda e: e >= EXPOSURE_BINS[1]}
    by_bin = {}
    for label, within in bins.items():
        group = [r for r in records if r["exposures"] is not None and within(r["exposures"])]
        probed = [r for r in group if r["recall_probed"]]
        by_bin[label] = {"n": len(group), "correct": sum(r["correct"] for r in group), "probed": len(probed),
                         "recalled": sum(bool(r["recalled"]) for r in probed)}
    return {"median": median_exposures(seen), "never": sum(e == 0 for e in seen),
            "not_in_biography": len(records) - len(seen), "by_exposures": by_bin}


# ---------------------------------------------------------------- records and their summary


def split(records: list[dict], key: str) -> dict:
    """Accuracy among the records whose `key` is true, and among those where it is false."""
    out = {}
    for value in (True, False):
        group = [r for r in records if r[key] is value]
        correct = sum(r["correct"] for r in group)
        out[str(value).lower()] = {"n": len(group), "correct": correct, "accuracy": proportion(correct, len(group))}
    return out


def analyze_answers(questions: list[Question], scored: list[Scored], index: CorpusIndex,
                    train: list[Question] | None = None, recalled: list[bool | None] | None = None,
                    recitations: list[str] | None = None, calibration: Calibration | None = None,
                    exposures: list[float | None] | None = None) -> dict:
    """Records, summary and risk–coverage (the JSON of the module docstring, without "meta"); `recalled` is
    `biography_recall`'s answer per question, when there is a pretrained model to probe; `recitations` what a
    recite model wrote before each answer; `calibration` one fitted on other answers; `exposures`
    `pretraining_exposures`'s count per question."""
    if len(questions) != len(scored):
        raise ValueError(f"{len(scored)} answers for {len(questions)} questions")
    if not questions or questions[0].answer is None:
        raise FactlabError("no gold answers: the analysis needs question<TAB>answer lines")
    nearest_index = train_freq = train_answers = None
    if train:
        named = [(question_name(q.question), q.answer) for q in train]
        named = [(n, a) for n, a in named if n]
        nearest_index = NearestName([n for n, _ in named], [a for _, a in named])
        train_freq = {p: c / len(train) for p, c in Counter(q.answer for q in train).items()}
        train_answers = set(train_freq)
    records = []
    for q, s in zip(questions, scored):
        name = question_name(q.question)
        near = nearest_index.nearest(name) if nearest_index and name else None
        records.append({
            "question": q.question, "name": name, "gold": q.answer, "prediction": s.answer,
            "correct": s.answer == q.answer, "confidence": s.prob, "logprob": s.logprob,
            "first_char_prob": s.first_char_prob, "closed": s.closed,
            "name_in_corpus": index.mentions(name), "n_documents": len(index.documents_of(name)),
            "gold_in_doc": index.place_in_documents(q.answer, name),
            "prediction_in_doc": index.place_in_documents(s.answer, name),
            "prediction_in_train_answers": None if train_answers is None else s.answer in train_answers,
            "nearest_train_name": near[0] if near else None, "nearest_train_answer": near[1] if near else None,
            "nearest_similarity": near[2] if near else None,
        })
    if recalled is not None:
        for record, known in zip(records, recalled):
            record.update(recall_probed=known is not None, recalled=known)
    if exposures is not None:
        for record, seen in zip(records, exposures):
            record["exposures"] = seen
    if recitations is not None:
        for record, recited in zip(records, recitations):
            record.update(recitation=recited, gold_in_recitation=record["gold"] in recited)
    correct = sum(r["correct"] for r in records)
    wrong = [r for r in records if not r["correct"]]
    confidences = [r["confidence"] for r in records]
    summary = {
        "n": len(records), "correct": correct, "accuracy": correct / len(records),
        "by": {key: split(records, key) for key in ("name_in_corpus", "gold_in_doc", "prediction_in_doc")},
        "confidence": {
            "mean_correct": mean_or_none([r["confidence"] for r in records if r["correct"]]),
            "mean_wrong": mean_or_none([r["confidence"] for r in wrong]),
            "median": float(np.median(confidences)),
        },
        "distinct_predictions": len({r["prediction"] for r in records}),
        "frequent_predictions": [list(x) for x in Counter(r["prediction"] for r in records).most_common(TOP)],
        "frequent_wrong_answers": [list(x) for x in Counter(r["prediction"] for r in wrong).most_common(TOP)],
        "wrong_in_train_answers": None if train_answers is None else sum(r["prediction"] in train_answers
                                                                          for r in wrong),
        "nearest_name": None,
    }
    if recalled is not None:
        summary["by"]["recalled"] = split([r for r in records if r["recall_probed"]], "recalled")
    if exposures is not None:
        summary["exposures"] = exposure_summary(records)
    if recitations is not None:
        summary["by"]["gold_in_recitation"] = split(records, "gold_in_recitation")
    if nearest_index is not None:
        def test(group):
            group = [r for r in group if r["nearest_train_answer"] is not None]
            return match_test([r["prediction"] for r in group], [r["nearest_train_answer"] for r in group],
                              train_freq)
        summary["nearest_name"] = {"similarity": SIMILARITY, "wrong": test(wrong), "all": test(records)}
    summary["calibration"] = calibration_summary(records, calibration)
    return {"records": records, "summary": summary,
            "risk_coverage": risk_coverage(confidences, [r["correct"] for r in records])}


def calibration_summary(records: list[dict], calibration: Calibration | None) -> dict:
    """How well the confidences state their probability of being right: reliability bins and ECE, and with a
    calibration fitted on other answers (a validation split's), the same for the calibrated confidences, which
    the records then carry as "calibrated_confidence"."""
    correct = [r["correct"] for r in records]
    raw = [r["confidence"] for r in records]
    summary = {"bins": CALIBRATION_BINS, "ece": expected_calibration_error(raw, correct),
               "reliability": reliability(raw, correct), "platt": None}
    if calibration is not None:
        calibrated = calibration.platt(raw)
        for record, p in zip(records, calibrated):
            record["calibrated_confidence"] = p
        summary.update(platt={"a": calibration.platt.a, "b": calibration.platt.b, "fitted_on": calibration.source,
                              "n": calibration.n},
                       ece_calibrated=expected_calibration_error(calibrated, correct),
                       reliability_calibrated=reliability(calibrated, correct))
    return summary


@dataclass(frozen=True)
class Calibration:
    """Platt scaling fitted on the records of another analysis (`analyze --calibrate_on`)."""
    platt: Platt
    source: str
    n: int

    @classmethod
    def fitted_on(cls, analysis_path) -> Calibration:
        analysis = read_json(analysis_path)
        records = analysis.get("records") if isinstance(analysis, dict) else None
        if not isinstance(records, list) or not records or not all(
                isinstance(r, dict) and isinstance(r.get("confidence"), (int, float))
                and isinstance(r.get("correct"), bool) for r in records):
            raise FactlabError(f"{analysis_path}: expected a `factlab analyze` JSON whose records have a "
                               "confidence and correct")
        try:
            platt = Platt.fit([r["confidence"] for r in records], [r["correct"] for r in records])
        except ValueError as err:
            raise FactlabError(f"{analysis_path}: {err}") from None
        return cls(platt, str(analysis_path), len(records))


# ---------------------------------------------------------------- factlab analyze


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _p(x: float | None) -> str:
    return "–" if x is None else (f"{x:.2g}" if x >= 1e-4 else "< 1e-4")


def format_summary(result: dict) -> str:
    s, rc = result["summary"], result["risk_coverage"]
    lines = [f"Correct: {s['correct']} out of {s['n']}: {100.0 * s['correct'] / s['n']}%"]
    c = s["confidence"]
    # analyses written before the summary named its format: only recite recorded recitations then
    fmt = FORMATS.get(s.get("answer_format")) or (RECITE if "gold_in_recitation" in s["by"] else DIRECT)
    what = fmt.confidence
    lines.append(f"confidence (probability of {what}): mean {_fmt(c['mean_correct'])} when "
                 f"correct, {_fmt(c['mean_wrong'])} when wrong; median {_fmt(c['median'])}")
    lines.append(f"accuracy at 50% coverage: {_pct(rc['accuracy_at_50'])} (full coverage {_pct(rc['accuracy_full'])}"
                 f"; answer only when confidence >= {rc['threshold_at_50']:.4g}); AURC {rc['aurc']:.4f} "
                 f"(random order {rc['aurc_random']:.4f}, best order {rc['aurc_oracle']:.4f})")
    cal = s.get("calibration")
    if cal is not None:
        line = f"calibration: ECE {cal['ece']:.3f} ({cal['bins']} equal-width bins)"
        if cal["platt"] is not None:
            pl = cal["platt"]
            line += (f"; Platt scaling fitted on {pl['n']} answers of {pl['fitted_on']} (a {pl['a']:.3g}, "
                     f"b {pl['b']:.3g}): ECE {cal['ece_calibrated']:.3f}")
        lines.append(line)
    if "correct_in_top_half" in rc:
        lines.append(f"the most confident half holds {rc['correct_in_top_half']} of the {s['correct']} correct answers;"
                     f" the best order would give {_pct(rc['accuracy_at_50_best'])} at 50% coverage")
    labels = {"name_in_corpus": "name occurs in the corpus", "gold_in_doc": "gold place in the person's document",
              "prediction_in_doc": "predicted place in the person's document",
              "recalled": "the pretrained model recalls the gold place from the biography (probed questions)",
              "gold_in_recitation": "gold place in the model's own recitation"}
    for key, label in labels.items():
        if key not in s["by"]:
            continue
        parts = [f"{word} {g['correct']}/{g['n']} = {_pct(g['accuracy'])}"
                 for word, g in zip(("yes", "no"), (s["by"][key]["true"], s["by"][key]["false"]))]
        lines.append(f"accuracy by {label}: " + "; ".join(parts))
    ex = s.get("exposures")
    if ex is not None:
        bins = "; ".join(f"{label}: {g['recalled']}/{g['probed']} recalled, {g['correct']}/{g['n']} right"
                         for label, g in ex["by_exposures"].items() if g["n"])
        lines.append(f"pretraining draws that held the gold place: median {_fmt(ex['median'])}, none for "
                     f"{ex['never']}, not in the biography for {ex['not_in_biography']}; by exposures, {bins}")
    lines.append(f"{s['distinct_predictions']} distinct answers; most frequent: "
                 + ", ".join(f"{p or '(empty)'} {n}" for p, n in s["frequent_predictions"]))
    lines.append("most frequent wrong answers: " + ", ".join(f"{p or '(empty)'} {n}" for p, n in s["frequent_wrong_answers"]))
    if s["wrong_in_train_answers"] is not None:
        lines.append(f"wrong answers that are a training answer: {s['wrong_in_train_answers']} of "
                     f"{s['n'] - s['correct']}")
    nn = s["nearest_name"]
    if nn is not None:
        w = nn["wrong"]
        lines.append(
            f"nearest training name (character trigrams): {w['matches']} of {w['n']} wrong answers "
            f"({_pct(w['rate'])}) are its birthplace; expected {_pct(w['expected_train_frequencies'])} if drawn from "
            f"the training answer frequencies (p = {_p(w['p_value_train_frequencies'])}), "
            f"{_pct(w['expected_permutation'])} if the model's wrong answers were shuffled among these questions "
            f"(p = {_p(w['p_value_permutation'])})")
    return "\n".join(lines)


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def run_analysis(variant: str, corpus_path, reading_params_path, eval_corpus_path, options,
                 train_corpus_path=None, outputs_path=None, device: str = "auto", recall_params_path=None,
                 calibrate_on=None, answered: tuple | None = None) -> dict:
    """The analysis of a checkpoint's answers to a question file (written to outputs_path as JSON); `answered` is
    (the Scored answers, the recitations) when the caller has decoded them already (experiment.evaluate with
    with_scores), so they are not decoded twice."""
    if outputs_path is not None:
        experiment.check_output_path(outputs_path)
    calibration = Calibration.fitted_on(calibrate_on) if calibrate_on is not None else None
    model, corpus = experiment.load_model(reading_params_path, variant, corpus_path, options)
    questions = experiment.read_questions(eval_corpus_path, require_answers=True)
    train = (experiment.read_questions(train_corpus_path, require_answers=True)
             if train_corpus_path is not None else None)
    answer_format = checkpoint_format(reading_params_path)
    if answered is None:
        answered = experiment.answer(model, corpus.vocab, questions, device, with_scores=True,
                                     answer_format=answer_format)
    scored, recitations = answered
    if len(scored) != len(questions):
        raise FactlabError(f"{eval_corpus_path}: {len(questions)} questions, but {len(scored)} answers given")
    index = CorpusIndex(read_text(corpus_path))
    recalled = exposures = None
    if recall_params_path is not None:
        pretrained, _ = experiment.load_model(recall_params_path, variant, corpus_path, experiment.ModelOptions())
        pretrained.to(next(model.parameters()).device)
        recalled = biography_recall(pretrained, corpus.vocab, index, questions)
        header = checkpoint.read_config(recall_params_path)  # None for a course .params file
        if header and header[2].get("stage") == "pretrain":  # else no pretraining epochs to count
            exposures = pretraining_exposures(index, questions, header[2], pretrained.config.block_size)
    result = analyze_answers(questions, scored, index, train, recalled, recitations, calibration, exposures)
    result["summary"]["answer_format"] = answer_format.name
    meta = {"variant": variant, "checkpoint": str(reading_params_path), "corpus_path": str(corpus_path),
            "eval_corpus_path": str(eval_corpus_path),
            "train_corpus_path": None if train_corpus_path is None else str(train_corpus_path),
            "recall_checkpoint": None if recall_params_path is None else str(recall_params_path),
            "n_questions": len(questions), "document_rule": DOCUMENT_RULE, "similarity": SIMILARITY}
    result = {"schema": SCHEMA, "meta": meta, **result}
    if outputs_path is not None:
        write_text_atomic(outputs_path, json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    return result


def summary_numbers(result: dict) -> dict:
    """The key numbers of an analysis, for a results table: accuracy at full and at half coverage, AURC, ECE (and
    after calibration), and, with the recall probe, how many facts the pretrained model stored and how many of
    those and of the others the model answered right."""
    s, rc, cal = result["summary"], result["risk_coverage"], result["summary"]["calibration"]
    numbers = {"accuracy": s["accuracy"], "accuracy_at_50": rc["accuracy_at_50"], "aurc": rc["aurc"],
               "ece": cal["ece"]}
    if cal["platt"] is not None:
        numbers["ece_calibrated"] = cal["ece_calibrated"]
    recalled = s["by"].get("recalled")
    if recalled is not None:
        numbers["recall"] = {"probed": recalled["true"]["n"] + recalled["false"]["n"], "recalled": recalled["true"]["n"],
                             "correct_when_recalled": recalled["true"]["correct"],
                             "correct_otherwise": recalled["false"]["correct"]}
    if s.get("exposures") is not None:
        numbers["exposures_median"] = s["exposures"]["median"]
    return numbers
