"""factlab.analysis and the verbs built on it: `analyze`, `evaluate --abstain_below`, `ask`.

The pure parts (risk–coverage, the nearest-name test, the corpus lookups) are checked on hand-made inputs against
brute force; the commands run on the synthetic corpus with a tiny model trained for a few seconds."""

from __future__ import annotations

import io
import itertools
import json
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BLOCK, TINY, tiny_corpus
from factlab import experiment
from factlab.analysis import (NearestName, analyze_answers, biography_recall, exposure_summary, pretraining_exposures,
                              recall_prompt, trigrams)
from factlab.ask import alternatives
from factlab.cli import main
from factlab.data import CorpusIndex, Question, chance_draw_holds, parse_questions, question_name
from factlab.decode import Scored, answer_one_by_one, prompt_ids
from factlab.statistics import match_test, poisson_binomial_tail, risk_coverage
from factlab.recipes import Training

OPTIONS = experiment.ModelOptions(block_size=BLOCK, dropout=0.0, **TINY)
SCORE = re.compile(r"^Correct: (\d+) out of (\d+): ([0-9.]+)%$", re.M)


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- risk–coverage


def test_risk_coverage_hand_made():
    """Sorted by confidence: accuracy among the top k, AURC = mean risk, accuracy at ceil(n/2), oracle, random."""
    rc = risk_coverage([0.6, 0.9, 0.7, 0.8], [False, True, True, False])  # sorted: T F T F
    assert rc["coverage"] == [0.25, 0.5, 0.75, 1.0]
    assert rc["accuracy"] == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert rc["aurc"] == pytest.approx((0 + 0.5 + 1 / 3 + 0.5) / 4)
    assert rc["accuracy_at_50"] == 0.5 and rc["accuracy_full"] == 0.5 and rc["threshold_at_50"] == 0.8
    assert rc["aurc_oracle"] == pytest.approx((0 + 0 + 1 / 3 + 1 / 2) / 4) and rc["aurc_random"] == 0.5
    assert rc["correct_in_top_half"] == 1 and rc["accuracy_at_50_best"] == 1.0
    odd = risk_coverage([0.1, 0.5, 0.5, 0.2, 0.9], [False, False, True, False, True])  # ties: file order
    assert odd["accuracy"][:3] == pytest.approx([1.0, 0.5, 2 / 3]) and odd["accuracy_at_50"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        risk_coverage([], [])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=30))
def test_risk_coverage_bounds(pairs):
    """The oracle order is never worse than the confidence order; full coverage is plain accuracy."""
    conf, correct = [p[0] for p in pairs], [p[1] for p in pairs]
    rc = risk_coverage(conf, correct)
    assert rc["accuracy"][-1] == pytest.approx(sum(correct) / len(correct)) == rc["accuracy_full"]
    assert rc["aurc_oracle"] <= rc["aurc"] + 1e-12
    assert 0 <= rc["aurc"] <= 1 and len(rc["coverage"]) == len(pairs)
    # the best order's accuracy at 50% coverage bounds the confidence order's; below 50% accuracy it is twice
    # the full accuracy, and reached exactly when every correct answer is in the confident half
    half = -(-len(pairs) // 2)
    assert rc["accuracy_at_50"] == pytest.approx(rc["correct_in_top_half"] / half)
    assert rc["accuracy_at_50"] <= rc["accuracy_at_50_best"] + 1e-12
    if sum(correct) <= half:
        assert rc["accuracy_at_50_best"] == pytest.approx(sum(correct) / half)
        assert (rc["accuracy_at_50"] == pytest.approx(rc["accuracy_at_50_best"])) == (
            rc["correct_in_top_half"] == sum(correct))


# ---------------------------------------------------------------- nearest name and its test


def brute_jaccard(a: str, b: str) -> float:
    x, y = trigrams(a), trigrams(b)
    return len(x & y) / len(x | y)


def test_nearest_name_matches_brute_force(corpus):
    """The inverted index finds the training name of highest trigram Jaccard, the earliest on ties."""
    train = parse_questions(corpus.train, "train")
    names, answers = [question_name(q.question) for q in train], [q.answer for q in train]
    index = NearestName(names, answers)
    for q in parse_questions(corpus.dev, "dev"):
        name = question_name(q.question)
        best = max(range(len(names)), key=lambda i: (brute_jaccard(name, names[i]), -i))
        assert index.nearest(name) == (names[best], answers[best], pytest.approx(brute_jaccard(name, names[best])))
    assert index.nearest(names[3]) == (names[3], answers[3], 1.0)
    assert NearestName(["Abc", "Abd"], ["X", "Y"]).nearest("Ab") == ("Abc", "X", 0.25)  # tie: the earlier
    assert index.nearest("qqq") is None
    assert trigrams("Ab") == {" ab", "ab "}


def test_match_test_baselines_by_brute_force():
    """Expected match rates: mean training frequency of the nearest answers, and the mean over every
    permutation of the predictions; p-values from the Poisson-binomial tail and from permutations."""
    predictions = ["Paris", "Oslo", "Paris", "Rome", "Oslo"]
    nearest = ["Paris", "Paris", "Oslo", "Rome", "Oslo"]
    freq = {"Paris": 0.5, "Oslo": 0.25, "Rome": 0.25}
    result = match_test(predictions, nearest, freq, permutations=2000)
    assert result["matches"] == 3 and result["rate"] == 0.6
    assert result["expected_train_frequencies"] == pytest.approx((0.5 + 0.5 + 0.25 + 0.25 + 0.25) / 5)
    perms = list(itertools.permutations(predictions))
    mean = sum(sum(p == q for p, q in zip(perm, nearest)) for perm in perms) / len(perms) / 5
    assert result["expected_permutation"] == pytest.approx(mean)
    share = sum(sum(p == q for p, q in zip(perm, nearest)) >= 3 for perm in perms) / len(perms)
    assert result["p_value_permutation"] == pytest.approx(share, abs=0.03)
    probs = [0.5, 0.1, 0.3, 0.9]
    for k in range(6):
        brute = sum(math.prod(p if b else 1 - p for p, b in zip(probs, bits))
                    for bits in itertools.product([0, 1], repeat=4) if sum(bits) >= k)
        assert poisson_binomial_tail(probs, k) == pytest.approx(brute)
    assert match_test([], [], freq)["rate"] is None


# ---------------------------------------------------------------- corpus lookups and records

WIKI = ("Jack London. Jack London was born in San Francisco .\n"
        "John F. Kennedy. Born in Brookline, Kennedy lived in Boston .\n"
        "Ann Lee. Ann Lee was born in Paris .\n"
        "Ann Lee. Ann Lee is a singer from Lagos .\n"
        "Bob Ray. Bob Ray met Ann Lee in Oslo .\n")


def test_corpus_index_documents_and_places():
    index = CorpusIndex(WIKI)
    assert index.documents_of("John F. Kennedy") == [WIKI.splitlines()[1]]  # a name with a period
    assert len(index.documents_of("Ann Lee")) == 2  # a repeated name: both lines are hers
    assert index.place_in_documents("Lagos", "Ann Lee") and index.place_in_documents("Paris", "Ann Lee")
    assert not index.place_in_documents("Oslo", "Ann Lee")  # only in another person's document
    assert not index.place_in_documents("London", "Jack London")  # the name itself does not count
    assert not index.place_in_documents("", "Ann Lee")
    assert index.mentions("Ann Lee") and index.mentions("Lee") and not index.mentions("Eve Day")
    assert index.documents_of("Jack") == [] and index.documents_of(None) == []
    assert question_name("Where was John F. Kennedy born?") == "John F. Kennedy" and question_name("Who?") is None


def test_recall_prompt_is_the_document_up_to_the_place():
    """The prefix of the person's first document holding the place where prefix and place fit in the block;
    the name's own letters never count as the place."""
    index = CorpusIndex(WIKI)
    assert recall_prompt(index, "Jack London", "San Francisco", 128) == "Jack London. Jack London was born in "
    assert recall_prompt(index, "Jack London", "San Francisco", 48) is None  # the place would end at 50
    assert recall_prompt(index, "Jack London", "London", 128) is None  # only inside the name
    assert recall_prompt(index, "Ann Lee", "Lagos", 128) == "Ann Lee. Ann Lee is a singer from "  # second document
    assert recall_prompt(index, "Bob Ray", "Rome", 128) is None and recall_prompt(index, "Eve Day", "Rome", 128) is None


def test_analyze_answers_records_and_summary():
    questions = [Question(f"Where was {n} born?", gold, f"dev:{i}") for i, (n, gold) in enumerate(
        [("Jack London", "San Francisco"), ("Ann Lee", "Paris"), ("Bob Ray", "Oslo"), ("Eve Day", "Rome"),
         ("John F. Kennedy", "Brookline")], start=1)]
    answers = [("London", -1.0), ("Paris", -0.1), ("Paris", -2.0), ("Paris", -3.0), ("Brookline", -0.5)]
    scored = [Scored(a, lp, 0.9, True) for a, lp in answers]
    train = [Question("Where was Jack Londo born?", "Paris", "t:1"), Question("Where was Eve Dax born?", "Paris", "t:2"),
             Question("Where was Ann Le born?", "Oslo", "t:3"), Question("Where was Bob Roy born?", "Lima", "t:4")]
    result = analyze_answers(questions, scored, CorpusIndex(WIKI), train)
    r = result["records"]
    assert [x["correct"] for x in r] == [False, True, False, False, True]
    assert [x["name_in_corpus"] for x in r] == [True, True, True, False, True]
    assert [x["gold_in_doc"] for x in r] == [True, True, True, False, True]
    assert [x["prediction_in_doc"] for x in r] == [False, True, False, False, True]
    assert r[0]["confidence"] == pytest.approx(math.exp(-1.0)) and r[0]["first_char_prob"] == 0.9
    assert [x["nearest_train_name"] for x in r] == ["Jack Londo", "Ann Le", "Bob Roy", "Eve Dax", None]  # no shared trigram
    assert r[3]["nearest_train_answer"] == "Paris" and r[0]["prediction_in_train_answers"] is False
    s = result["summary"]
    assert (s["n"], s["correct"], s["accuracy"]) == (5, 2, 0.4)
    assert s["by"]["name_in_corpus"] == {"true": {"n": 4, "correct": 2, "accuracy": 0.5},
                                         "false": {"n": 1, "correct": 0, "accuracy": 0.0}}
    assert s["by"]["prediction_in_doc"]["true"] == {"n": 2, "correct": 2, "accuracy": 1.0}
    assert s["frequent_wrong_answers"] == [["Paris", 2], ["London", 1]]
    assert s["frequent_predictions"][0] == ["Paris", 3] and s["wrong_in_train_answers"] == 2
    wrong = s["nearest_name"]["wrong"]  # wrong: London (nearest Paris), Paris (Lima), Paris (Paris)
    assert (wrong["n"], wrong["matches"]) == (3, 1)
    assert wrong["expected_train_frequencies"] == pytest.approx((0.5 + 0.25 + 0.5) / 3)
    rc = result["risk_coverage"]
    assert rc["accuracy"][:2] == [1.0, 1.0] and rc["accuracy_at_50"] == pytest.approx(2 / 3)
    assert analyze_answers(questions, scored, CorpusIndex(WIKI))["summary"]["nearest_name"] is None


# ---------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The synthetic corpus and a tiny vanilla model finetuned from scratch for a few seconds."""
    root = tmp_path_factory.mktemp("analysis")
    files = tiny_corpus().write(root / "data")
    files["ft"] = root / "ft.params"
    torch.manual_seed(0)
    experiment.finetune("vanilla", files["wiki"], files["train"], files["ft"], OPTIONS, device="cpu",
                        training=Training(max_epochs=20, batch_size=16, learning_rate=3e-3, warmup_tokens=16 * BLOCK))
    return files


@pytest.fixture(scope="module")
def analysis(work, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "dev.analysis.json"
    assert main(["analyze", "vanilla", str(work["wiki"]), "--reading_params_path", str(work["ft"]),
                 "--eval_corpus_path", str(work["dev"]), "--train_corpus_path", str(work["train"]),
                 "--outputs_path", str(out), "--device", "cpu"]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


RECORD_KEYS = {"question", "name", "gold", "prediction", "correct", "confidence", "logprob", "first_char_prob",
               "closed", "name_in_corpus", "n_documents", "gold_in_doc", "prediction_in_doc",
               "prediction_in_train_answers", "nearest_train_name", "nearest_train_answer", "nearest_similarity"}


def test_analyze_json_schema(work, analysis, tmp_path, capsys):
    """analyze writes the documented JSON: a record per dev question with the answers `evaluate` gives, and
    a summary and risk–coverage consistent with the records; it prints the summary."""
    assert analysis["schema"] == "factlab-analysis-1" and analysis["meta"]["variant"] == "vanilla"
    records = analysis["records"]
    dev = parse_questions(work["dev"].read_text(), "dev")
    assert [r["question"] for r in records] == [q.question for q in dev]
    assert all(set(r) == RECORD_KEYS for r in records)
    predictions = tmp_path / "dev.predictions"
    assert main(["evaluate", "vanilla", str(work["wiki"]), "--reading_params_path", str(work["ft"]),
                 "--eval_corpus_path", str(work["dev"]), "--outputs_path", str(predictions)]) == 0
    assert [r["prediction"] for r in records] == predictions.read_text(encoding="utf-8").splitlines()
    assert all(0 < r["confidence"] <= r["first_char_prob"] + 1e-9 <= 1 + 1e-9 for r in records)
    assert all(r["name_in_corpus"] and r["gold_in_doc"] and r["n_documents"] == 1 for r in records)
    assert all(r["correct"] == (r["prediction"] == r["gold"]) for r in records)
    summary, rc = analysis["summary"], analysis["risk_coverage"]
    assert summary["correct"] == sum(r["correct"] for r in records) and summary["n"] == len(records)
    assert set(summary["by"]) == {"name_in_corpus", "gold_in_doc", "prediction_in_doc"}
    assert summary["nearest_name"]["wrong"]["n"] == len(records) - summary["correct"]
    assert set(rc) >= {"coverage", "accuracy", "aurc", "accuracy_at_50", "accuracy_full"}
    assert len(rc["coverage"]) == len(rc["accuracy"]) == len(records)
    assert rc["accuracy_full"] == summary["accuracy"]
    code, out, err = run(capsys, "analyze", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                         "--eval_corpus_path", work["dev"])
    assert code == 0 and err == "" and SCORE.search(out) and "accuracy at 50% coverage" in out
    assert "nearest training name" not in out  # no training file given


def test_recall_probe_through_analyze(work, tmp_path, capsys):
    """--recall_params_path probes a checkpoint with each person's biography prefix: a record says whether it
    was probed and recalled, the recall agrees with the course's one-question-at-a-time greedy loop, and the
    summary splits accuracy by it over the probed questions."""
    out = tmp_path / "recall.analysis.json"
    code, text, err = run(capsys, "analyze", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                          "--eval_corpus_path", work["dev"], "--recall_params_path", work["ft"],
                          "--outputs_path", out)
    assert code == 0 and err == "" and "recalls the gold place" in text
    result = json.loads(out.read_text(encoding="utf-8"))
    records = result["records"]
    assert all(set(r) == RECORD_KEYS | {"recall_probed", "recalled"} for r in records)
    assert result["meta"]["recall_checkpoint"] == str(work["ft"])
    probed = [r for r in records if r["recall_probed"]]
    assert len(probed) > len(records) // 2 and all(r["recalled"] is None for r in records if not r["recall_probed"])
    split = result["summary"]["by"]["recalled"]
    assert split["true"]["n"] + split["false"]["n"] == len(probed)
    assert split["true"]["n"] == sum(r["recalled"] for r in probed)

    model, corpus = experiment.load_model(work["ft"], "vanilla", work["wiki"], OPTIONS)
    dev = parse_questions(work["dev"].read_text(), "dev")[:12]
    index = CorpusIndex(work["wiki"].read_text())
    expected = []
    for q in dev:
        text = recall_prompt(index, question_name(q.question), q.answer, BLOCK)
        expected.append(None if text is None else answer_one_by_one(
            model, corpus.vocab, [corpus.vocab.encode(text)], max_chars=len(q.answer))[0].startswith(q.answer))
    assert biography_recall(model, corpus.vocab, index, dev) == expected
    assert [r["recalled"] for r in records[:12]] == expected


def test_evaluate_abstain_below(work, analysis, tmp_path, capsys):
    """--abstain_below P answers "unknown" exactly where the answer's probability is below P; the course line
    counts abstentions as wrong, a second line gives coverage and accuracy on the answered questions."""
    records = analysis["records"]
    threshold = analysis["risk_coverage"]["threshold_at_50"]
    outputs = tmp_path / "abstain.predictions"
    code, out, err = run(capsys, "evaluate", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                         "--eval_corpus_path", work["dev"], "--outputs_path", outputs, "--abstain_below", threshold)
    assert code == 0 and err == ""
    lines = outputs.read_text(encoding="utf-8").splitlines()
    kept = [r["confidence"] >= threshold for r in records]
    assert lines == [r["prediction"] if k else "unknown" for r, k in zip(records, kept)]
    assert sum(kept) == math.ceil(len(records) / 2)  # the threshold at 50% coverage answers half
    correct = sum(r["correct"] and k for r, k in zip(records, kept))
    first, second = out.strip().splitlines()
    assert first == f"Correct: {correct} out of {len(records)}: {100.0 * correct / len(records)}%"
    assert second.startswith(f"Abstained on {len(records) - sum(kept)} of {len(records)} questions")
    assert f"answered {sum(kept)} (coverage {100 * sum(kept) / len(records):.1f}%), {correct} correct" in second
    code, out, _ = run(capsys, "evaluate", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                       "--eval_corpus_path", work["test"], "--abstain_below", "1")  # no answers to score
    assert code == 0 and "nothing to score" in out and "answered 0 (coverage 0.0%)" in out
    code, out, err = run(capsys, "evaluate", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                         "--eval_corpus_path", work["dev"], "--abstain_below", "1.5")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--abstain_below" in err


def test_ask_one_question(work, analysis, capsys):
    """ask (variant from the checkpoint) gives evaluate's answer with analyze's probability, top-k alternatives
    by probability, and the person's document; the question may also come unquoted after the options."""
    train_answers = {line.split("\t")[1] for line in work["train"].read_text().splitlines()}
    record = next(r for r in analysis["records"] if r["gold"] in train_answers)  # so its document names one
    code, out, err = run(capsys, "ask", work["wiki"], "--reading_params_path", work["ft"], record["question"],
                         "--train_corpus_path", work["train"], "--top_k", "3")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == record["question"]
    match = re.match(r"  answer: (.*?)   probability (\S+) \(first character (\S+)\)", lines[1])
    assert match[1] == (record["prediction"] or "(empty)")
    assert float(match[2]) == pytest.approx(record["confidence"], rel=1e-3)
    assert float(match[3]) == pytest.approx(record["first_char_prob"], rel=1e-3)
    assert lines[2].startswith("  alternatives (3 likeliest first characters, each continued greedily)")
    probs = [float(line.split()[0]) for line in lines[3:6]]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1
    assert f"  corpus: {record['name']!r} occurs in wiki.txt; 1 document(s) start with it" in lines
    assert any(line.strip().startswith(record["name"] + ".") for line in lines)
    assert "places of the training answers named there:" in out
    words = record["question"].split()
    code, out2, _ = run(capsys, "ask", "vanilla", work["wiki"], "--reading_params_path", work["ft"], "--top_k", "3",
                        *words, "--train_corpus_path", work["train"])
    assert code == 0 and out2 == out


def test_ask_alternatives_are_continued_greedily(work):
    """Each alternative's probability is p(first character) · p(greedy continuation and ⁇), which for the
    likeliest first character is the greedy answer itself."""
    model, corpus = experiment.load_model(work["ft"], "vanilla", work["wiki"], OPTIONS)
    question = parse_questions(work["dev"].read_text(), "dev")[1].question
    prompt = prompt_ids(corpus.vocab, question)
    greedy = experiment.answer(model, corpus.vocab, [Question(question, None, "q")], "cpu", with_scores=True)[0][0]
    found = alternatives(model, corpus.vocab, prompt, 4)
    assert len(found) == 4 and len({a for a, _ in found}) == 4
    assert found[0][1] >= found[-1][1]
    by_answer = dict(found)
    assert by_answer[greedy.answer] == pytest.approx(greedy.prob, rel=1e-4)
    for answer, p in found:
        if answer:  # a full forward pass over prompt + answer + ⁇
            ids = prompt + corpus.vocab.encode(answer) + [1]
            with torch.no_grad():
                logprobs = model(torch.tensor([ids[:-1]]))[0][0].double().log_softmax(-1)
            expected = sum(float(logprobs[len(prompt) - 1 + i, t]) for i, t in enumerate(ids[len(prompt):]))
            assert math.log(p) == pytest.approx(expected, abs=1e-4)


def test_ask_reads_stdin_until_eof(work, monkeypatch, capsys):
    """Without a question, ask answers each stdin line; a bad line gives one error line and exit status 2,
    blank lines are skipped, and a person absent from the corpus is reported as such."""
    dev = work["dev"].read_text().splitlines()
    lines = [dev[0].split("\t")[0], "", "Where was Zoë Ü born?", "Where was Nobody Known born?"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    code, out, err = run(capsys, "ask", work["wiki"], "--reading_params_path", work["ft"])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("factlab: error: question: character")
    assert out.count("  answer: ") == 2
    assert "  corpus: 'Nobody Known' does not occur in wiki.txt" in out


@pytest.mark.parametrize("case", ["missing checkpoint", "other variant", "too long", "reserved", "no answers",
                                  "top_k 0"])
def test_errors_are_one_line(work, tmp_path, capsys, case):
    args = {
        "missing checkpoint": ["ask", work["wiki"], "--reading_params_path", tmp_path / "none.params", "Where?"],
        "other variant": ["ask", "synthesizer", work["wiki"], "--reading_params_path", work["ft"], "Where?"],
        "too long": ["ask", work["wiki"], "--reading_params_path", work["ft"], "Where was " + "Od " * 40 + "born?"],
        "reserved": ["ask", work["wiki"], "--reading_params_path", work["ft"], "Where was \u2047 born?"],
        "top_k 0": ["ask", work["wiki"], "--reading_params_path", work["ft"], "--top_k", "0", "Where?"],
        "no answers": ["analyze", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                       "--eval_corpus_path", work["test"], "--outputs_path", tmp_path / "a.json"],
    }[case]
    code, out, err = run(capsys, *args)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("factlab: error: ")
    assert "Traceback" not in err and not (tmp_path / "a.json").exists()


def test_reliability_and_ece_by_hand():
    """Two bins used: [0.1, 0.2) holds 0.1 and 0.15 (one right: accuracy 0.5, confidence 0.125) and [0.9, 1]
    holds 0.9 and 1.0 (both right); ECE = 2/4 · 0.375 + 2/4 · 0.05."""
    from factlab.statistics import expected_calibration_error, reliability

    bins = reliability([0.1, 0.15, 0.9, 1.0], [True, False, True, True])
    assert [b["n"] for b in bins] == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins[1]["accuracy"] == 0.5 and bins[1]["confidence"] == pytest.approx(0.125)
    assert bins[0]["accuracy"] is None and bins[9]["high"] == 1.0
    assert expected_calibration_error([0.1, 0.15, 0.9, 1.0], [True, False, True, True]) == pytest.approx(
        0.5 * 0.375 + 0.5 * 0.05)


def test_platt_scaling_recovers_a_known_miscalibration_and_keeps_the_order():
    """Correctness drawn with probability sigmoid(2 · logit(p) − 1): the fit finds a ≈ 2, b ≈ −1, brings the ECE
    down, and never reorders the answers."""
    from factlab.statistics import Platt, expected_calibration_error

    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, 20_000)
    truth = 1 / (1 + np.exp(-(2 * np.log(p / (1 - p)) - 1)))
    correct = (rng.uniform(size=p.size) < truth).tolist()
    fit = Platt.fit(p.tolist(), correct)
    assert fit.a == pytest.approx(2, abs=0.1) and fit.b == pytest.approx(-1, abs=0.1)
    calibrated = fit(p.tolist())
    assert expected_calibration_error(calibrated, correct) < 0.02 < expected_calibration_error(p.tolist(), correct)
    assert np.array_equal(np.argsort(p, kind="stable"), np.argsort(calibrated, kind="stable"))
    with pytest.raises(ValueError, match="both correct and wrong"):
        Platt.fit([0.2, 0.3], [True, True])


def test_analyze_calibrated_on_another_analysis(work, analysis, tmp_path, capsys):
    """--calibrate_on fits Platt scaling on another analysis's records and reports raw and calibrated reliability;
    the order, and so risk–coverage, stays. (The tiny model answers nothing right, so the fitting file is its
    dev analysis with the more confident half marked right, standing in for a validation split's.)"""
    fitting = json.loads(json.dumps(analysis))
    median = np.median([r["confidence"] for r in fitting["records"]])
    for r in fitting["records"]:
        r["correct"] = bool(r["confidence"] > median)
    fitted_on = tmp_path / "validation.analysis.json"
    fitted_on.write_text(json.dumps(fitting), encoding="utf-8")
    out = tmp_path / "calibrated.analysis.json"
    code, printed, err = run(capsys, "analyze", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                             "--eval_corpus_path", work["dev"], "--calibrate_on", fitted_on, "--outputs_path", out)
    assert code == 0 and err == "" and "Platt scaling fitted on" in printed, err
    result = json.loads(out.read_text(encoding="utf-8"))
    cal = result["summary"]["calibration"]
    assert cal["platt"]["n"] == len(fitting["records"]) and cal["ece"] == analysis["summary"]["calibration"]["ece"]
    assert cal["ece_calibrated"] != cal["ece"] and 0 < cal["platt"]["a"]
    assert sum(b["n"] for b in cal["reliability_calibrated"]) == len(result["records"])
    raw = [r["confidence"] for r in result["records"]]
    calibrated = [r["calibrated_confidence"] for r in result["records"]]
    assert np.array_equal(np.argsort(raw, kind="stable"), np.argsort(calibrated, kind="stable"))
    assert result["risk_coverage"] == analysis["risk_coverage"]
    fitted_on.write_text('{"records": [{"confidence": 0.5}]}', encoding="utf-8")
    code, _, err = run(capsys, "analyze", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                       "--eval_corpus_path", work["dev"], "--calibrate_on", fitted_on)
    assert code == 2 and err.count("\n") == 1 and "records have a confidence and correct" in err


def test_pretraining_exposures_count_the_draws_that_held_each_place():
    """A place's exposures are the pretraining epochs times the chance a draw under the checkpoint's objective
    held the biography up to it; a place the biography never names has none to count; the summary bins them."""
    index = CorpusIndex("Ann Lee. Ann Lee was born in Rome.\nBob Ray. " + "x" * 130 + " Bob Ray was born in Oslo.\n")
    questions = [Question("Where was Ann Lee born?", "Rome", "q:1"), Question("Where was Bob Ray born?", "Oslo", "q:2"),
                 Question("Where was Ann Lee born?", "Paris", "q:3")]
    for objective in ("span", "lm", "mix"):
        info = {"stage": "pretrain", "pretraining": {"objective": objective}, "result": {"epochs_done": 300.0}}
        counts = pretraining_exposures(index, questions, info, 128)
        rome_ends = len("Ann Lee. Ann Lee was born in Rome")
        assert counts == [round(300 * chance_draw_holds(rome_ends, 128, objective), 1), 0.0, None]
    mostly_lm = {"pretraining": {"objective": "mix", "span_share": 0.1}, "result": {"epochs_done": 300.0}}
    assert pretraining_exposures(index, questions[:1], mostly_lm, 128) == [
        round(300 * chance_draw_holds(rome_ends, 128, "mix", 0.1), 1)]
    salient = {"pretraining": {"objective": "span", "salient_share": 0.5}, "result": {"epochs_done": 300.0}}
    assert pretraining_exposures(index, questions[:2], salient, 128) == [  # Rome is salient; Bob's has none in reach
        round(300 * chance_draw_holds(rome_ends, 128, "span", salient_share=0.5), 1), 0.0]
    assert chance_draw_holds(rome_ends, 128, "span", salient_share=0.5) > chance_draw_holds(rome_ends, 128, "span")
    assert pretraining_exposures(index, questions[:1], {"result": {"epochs_done": 10.0}}, 128) == [
        round(10 * chance_draw_holds(33, 128, "span"), 1)]  # a checkpoint of before the objectives: span
    records = [{"exposures": e, "correct": c, "recall_probed": p, "recalled": r}
               for e, c, p, r in [(300.0, True, True, True), (150.0, False, True, False), (0.0, False, False, None),
                                  (None, False, False, None), (1200.0, True, True, True)]]
    summary = exposure_summary(records)
    assert summary["median"] == 225.0 and summary["never"] == 1 and summary["not_in_biography"] == 1
    assert summary["by_exposures"] == {"0": {"n": 1, "correct": 0, "probed": 0, "recalled": 0},
                                       "<100": {"n": 0, "correct": 0, "probed": 0, "recalled": 0},
                                       "100-1000": {"n": 2, "correct": 1, "probed": 2, "recalled": 1},
                                       ">=1000": {"n": 1, "correct": 1, "probed": 1, "recalled": 1}}
