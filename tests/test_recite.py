"""Answering by recitation: the finetuning examples (formats.RecitationDataset), the two-pass decoder
(formats.recite_then_answer), and the checkpoint's answer format followed by finetune/evaluate/analyze/ask."""

from __future__ import annotations

import html
import json

import pytest
import torch
from hypothesis import given, settings, strategies as st

from conftest import BLOCK, make_model, quick_train, tiny_config
from factlab import FactlabError
from factlab.cli import main
from factlab.data import CharCorruptionDataset
from factlab.decode import answer_questions
from factlab.experiment import ModelOptions, finetune
from factlab.formats import (MIN_ANSWER_ROOM, RECITE_MARKED, MarkedRecitationDataset, RecitationDataset,
                             checkpoint_format_name, recitation_prompt, recite_then_answer)
from factlab.recipes import Training

MASK = "\u2047"
WIKI = ("Ab Cd. Ab Cd was born in Paris and lives in Oslo .\n"
        "Ef Gh. Ef Gh is a painter . Born in Ab City, Ef Gh moved to Paris .\n"
        "Ij Kl. Ij Kl is a very long biography that goes on and on before it names the town, Oslo .\n")
OPTIONS = ModelOptions(block_size=BLOCK, n_layer=2, n_head=2, n_embd=32, dropout=0.0)


def decode(ds, ids) -> str:
    return ds.vocab.decode(ids.tolist())


@pytest.fixture(scope="module")
def wiki_ds():
    return CharCorruptionDataset(WIKI, 64)


def test_recitation_example_layout(wiki_ds):
    """x = NAME. + the biography up to the first mention of the place (outside the name) + ⁇place⁇; the targets
    are unscored (PAD) over the prompt and decode to the rest."""
    ds = RecitationDataset(wiki_ds, "Where was Ab Cd born?\tParis\nWhere was Ef Gh born?\tAb City\n")
    x, y = ds.example(0)
    full = "Ab Cd. Ab Cd was born in Paris" + MASK + "Paris" + MASK
    assert decode(ds, x) == full[:-1]
    assert decode(ds, y[y != 0]) == full[len("Ab Cd."):]
    assert (y[: len("Ab Cd.") - 1] == 0).all() and (y[len("Ab Cd.") - 1:] != 0).all()
    # the place inside a name does not count ("Ab" in "Ab City" is not the name "Ab Cd"); the first mention does
    assert decode(ds, ds.example(1)[0]) == "Ef Gh. Ef Gh is a painter . Born in Ab City" + MASK + "Ab City"


def test_marked_recitation_example_layout(wiki_ds):
    """recite-marked: the place is written once, where the biography has it, between two ⁇; a recitation that
    recite could not fit (it writes the place twice) fits here."""
    ds = MarkedRecitationDataset(wiki_ds, "Where was Ab Cd born?\tParis\nWhere was Ij Kl born?\tOslo\n")
    x, y = ds.example(0)
    full = "Ab Cd. Ab Cd was born in " + MASK + "Paris" + MASK
    assert decode(ds, x) == full[:-1] and decode(ds, y[y != 0]) == full[len("Ab Cd."):]
    long = "Ij Kl. Ij Kl is a very long biography that goes on and on before it names the town, "
    block = len(long) + len("Oslo") + 2  # one place fits, two do not
    lines, corpus = "Where was Ij Kl born?\tOslo\n", CharCorruptionDataset(WIKI, block)
    assert decode(ds, MarkedRecitationDataset(corpus, lines).example(0)[0]) == long + MASK + "Oslo"
    assert decode(ds, RecitationDataset(corpus, lines).example(0)[0]) == "Ij Kl." + MASK + "Oslo"


def test_recitation_falls_back_to_the_bare_answer(wiki_ds):
    """No recitation when the biography does not name the place, when there is no biography, or when the
    recitation and the answer would not fit in the block: then NAME.⁇place⁇."""
    lines = "Where was Ab Cd born?\tBonn\nWhere was Ob Cb born?\tOslo\nWhere was Ij Kl born?\tOslo\n"
    ds = RecitationDataset(wiki_ds, lines)
    assert [decode(ds, ds.example(i)[0]) for i in range(3)] == [
        "Ab Cd." + MASK + "Bonn", "Ob Cb." + MASK + "Oslo", "Ij Kl." + MASK + "Oslo"]
    assert len("Ij Kl. Ij Kl is a very long biography that goes on and on before it names the town, Oslo") + 6 > 64
    assert ds[2][0].shape == (63,)  # the course's padded pair still works


WORD = st.text("abcdeP", min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(name=WORD, place=WORD, before=st.lists(WORD, max_size=12), after=st.lists(WORD, max_size=4),
       block=st.integers(16, 64))
def test_recitation_property(name, place, before, after, block):
    """Every example is `NAME.` + a recitation + ⁇place⁇ within the block, where the recitation is empty or the
    biography after `NAME.` up to the first mention of the place outside the name, ending with the place."""
    doc = f"{name}. " + " ".join(before + [place] + after) + " ."
    ds = RecitationDataset(CharCorruptionDataset(doc + "\n?", block), f"Where was {name} born?\t{place}\n")
    x, y = ds.example(0)
    text = decode(ds, x) + decode(ds, y[-1:])
    assert len(text) <= block and text.startswith(name + ".") and text.endswith(MASK + place + MASK)
    recited = text[len(name) + 1 : -len(place) - 2]
    assert recited == "" or (doc.startswith(name + "." + recited) and recited.endswith(place))
    first = doc.replace(name, "\0" * len(name)).find(place)
    if recited:
        assert len(name) + 1 + len(recited) == first + len(place)
    else:  # the place occurs only inside the name, or it would not have fitted
        assert first < 0 or first + 2 * len(place) + 2 > block


@settings(max_examples=40, deadline=None)
@given(name=WORD, place=WORD, before=st.lists(WORD, max_size=12), after=st.lists(WORD, max_size=4),
       block=st.integers(16, 64))
def test_marked_recitation_property(name, place, before, after, block):
    """Every recite-marked example is `NAME.` + the biography up to the first mention of the place outside the
    name + ⁇place⁇ within the block, or `NAME.⁇place⁇` when there is no such mention or it would not fit."""
    doc = f"{name}. " + " ".join(before + [place] + after) + " ."
    ds = MarkedRecitationDataset(CharCorruptionDataset(doc + "\n?", block), f"Where was {name} born?\t{place}\n")
    x, y = ds.example(0)
    text = decode(ds, x) + decode(ds, y[-1:])
    assert len(text) <= block and text.startswith(name + ".") and text.endswith(MASK + place + MASK)
    recited = text[len(name) + 1 : -len(place) - 2]
    first = doc.replace(name, "\0" * len(name)).find(place)
    if recited:
        assert doc.startswith(name + "." + recited) and len(name) + 1 + len(recited) == first
    else:
        assert first < 0 or first + len(place) + 2 > block


def test_marked_answers_are_scored_by_the_place_alone(recite_model, vocab, corpus):
    """recite-marked decodes as recite does (recitation to the first ⁇, then the place up to the next), and an
    answer's probability is that of the place and its closing ⁇ after the recitation, nothing more."""
    names = [line.split("\t")[0] for line in corpus.dev.splitlines()[:8]]
    prompts = [vocab.encode(recitation_prompt(q, "q")) for q in names]
    decoded = RECITE_MARKED.decode(recite_model, vocab, prompts, with_scores=True)
    recitations, answers = recite_then_answer(recite_model, vocab, prompts)
    assert decoded.recitations == recitations and [s.answer for s in decoded.answers] == answers
    direct = answer_questions(recite_model, vocab, decoded.read, with_scores=True)
    assert [s.logprob for s in decoded.answers] == [d.logprob for d in direct]


def test_recitation_needs_the_question_template(wiki_ds):
    """A question of another form is a one-line error naming the file and line."""
    with pytest.raises(FactlabError, match=r"^train.tsv:2: answering by recitation needs questions of the form"):
        RecitationDataset(wiki_ds, "Where was Ab Cd born?\tParis\nWho is Ab Cd?\tParis\n", source="train.tsv")
    assert recitation_prompt("Where was John F. Kennedy born?", "q") == "John F. Kennedy."


@pytest.fixture(scope="module")
def recite_model(pretrain_ds, corpus):
    """A tiny model finetuned on the synthetic corpus's recitation examples."""
    ds = RecitationDataset(pretrain_ds, corpus.train)
    model = make_model(tiny_config(len(pretrain_ds.vocab)))
    quick_train(model, ds, epochs=6, batch_size=16)
    return model.eval()


def test_recite_then_answer_is_two_greedy_passes(recite_model, vocab, corpus):
    """The recitation is the greedy text after NAME. up to ⁇; the answer the greedy text after
    NAME. + recitation + ⁇. Its probability is that of the answer after the recitation times that of the
    recitation's last len(answer) characters, each checked against a full forward pass."""
    names = [line.split("\t")[0] for line in corpus.dev.splitlines()[:12]]
    prompts = [vocab.encode(recitation_prompt(q, "q")) for q in names]
    recitations, scored = recite_then_answer(recite_model, vocab, prompts, with_scores=True)
    assert recitations == [r[: BLOCK - MIN_ANSWER_ROOM - len(p)] if len(p) + len(r) + 1 >= BLOCK else r
                           for p, r in zip(prompts, answer_questions(recite_model, vocab, prompts, max_chars=BLOCK))]
    second = [p + vocab.encode(r) + [1] for p, r in zip(prompts, recitations)]
    direct = answer_questions(recite_model, vocab, second, with_scores=True)
    assert [s.answer for s in scored] == [d.answer for d in direct]
    assert [s.first_char_prob for s in scored] == [d.first_char_prob for d in direct]
    for p, s, d, r in zip(prompts, scored, direct, recitations):
        ids = p + vocab.encode(r)
        with torch.no_grad():
            logprobs = recite_model(torch.tensor([ids]))[0][0].double().log_softmax(-1)
        tail = sum(float(logprobs[i - 1, ids[i]]) for i in range(max(len(p), len(ids) - len(s.answer)), len(ids)))
        assert s.logprob == pytest.approx(d.logprob + (tail if s.answer else 0.0), abs=1e-6)
    assert all(MASK not in r for r in recitations) and all(len(s) <= BLOCK for s in second)


def test_recitation_that_fills_the_block_is_cut(vocab):
    """A model that never closes its recitation still gets MIN_ANSWER_ROOM positions to answer in."""
    model = make_model(tiny_config(len(vocab)))
    with torch.no_grad():  # all-zero weights: every logit is 0, argmax is PAD, never ⁇
        for p in model.parameters():
            p.zero_()
    prompt = vocab.encode("Ab.")
    (recited,), (answer,) = recite_then_answer(model.eval(), vocab, [prompt])
    assert len(prompt) + len(recited) == BLOCK - MIN_ANSWER_ROOM
    assert len(answer) == MIN_ANSWER_ROOM  # positions BLOCK - MIN_ANSWER_ROOM + 1 .. BLOCK


def test_finetune_recite_end_to_end(corpus_files, tmp_path, capsys):
    """finetune --answer_format recite records the format in the checkpoint; evaluate follows it and writes
    the recitations beside the predictions; analyze adds them to its records; ask shows the recitation."""
    params = tmp_path / "recite.params"
    assert main(["finetune", "vanilla", str(corpus_files["wiki"]), "--finetune_corpus_path",
                 str(corpus_files["train"]), "--writing_params_path", str(params), "--answer_format", "recite",
                 "--block_size", str(BLOCK), "--n_layer", "2", "--n_head", "2", "--n_embd", "32",
                 "--max_epochs", "3", "--batch_size", "16", "--device", "cpu"]) == 0
    assert checkpoint_format_name(params) == "recite"
    predictions = tmp_path / "dev.predictions"
    assert main(["evaluate", "vanilla", str(corpus_files["wiki"]), "--reading_params_path", str(params),
                 "--eval_corpus_path", str(corpus_files["dev"]), "--outputs_path", str(predictions)]) == 0
    answers = predictions.read_text(encoding="utf-8").splitlines()
    recitations = (tmp_path / "dev.predictions.recitations").read_text(encoding="utf-8").splitlines()
    assert len(answers) == len(recitations) == len(corpus_files["dev"].read_text().splitlines())
    out = tmp_path / "dev.analysis.json"
    assert main(["analyze", "vanilla", str(corpus_files["wiki"]), "--reading_params_path", str(params),
                 "--eval_corpus_path", str(corpus_files["dev"]), "--outputs_path", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert [r["prediction"] for r in result["records"]] == answers
    assert [r["recitation"].replace("\n", "\\n") for r in result["records"]] == recitations
    assert all(r["gold_in_recitation"] == (r["gold"] in r["recitation"]) for r in result["records"])
    assert "gold_in_recitation" in result["summary"]["by"]
    question = corpus_files["dev"].read_text().splitlines()[0].split("\t")[0]
    capsys.readouterr()
    assert main(["ask", str(corpus_files["wiki"]), "--reading_params_path", str(params), question]) == 0
    shown = capsys.readouterr().out
    name = question[len("Where was "):-len(" born?")]
    assert f"  recitation: {name}." in shown and "  answer: " in shown
    # the report's predictions table shows each answer's recitation, from the file evaluate wrote
    row = {"run": "recite", "variant": "vanilla", "correct": 0, "total": len(answers), "percent": 0.0,
           "seconds": None, "params": params.name, "predictions": predictions.name}
    (tmp_path / "results.json").write_text(json.dumps({"rows": [row], "eval_corpus_path": str(corpus_files["dev"]),
                                                       "corpus_path": str(corpus_files["wiki"])}))
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<th>recitation (what the model wrote before answering)</th>" in page
    assert f"<td class=\"recited\">{html.escape(recitations[0])}</td>" in page
    (tmp_path / "dev.predictions.recitations").write_text("\n".join(recitations[:-1]) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "report.html")]) == 2
    assert (f"dev.predictions.recitations: {len(answers) - 1} recitations for the {len(answers)} questions"
            in capsys.readouterr().err)
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == page  # the earlier report is kept


def test_direct_checkpoints_answer_directly(corpus_files, tmp_path):
    """A checkpoint finetuned without --answer_format (or a course file) answers in the course's format; an
    unknown format is a one-line error before any training."""
    params = tmp_path / "direct.params"
    finetune("vanilla", corpus_files["wiki"], corpus_files["train"], params, OPTIONS, device="cpu",
             training=Training(max_epochs=1))
    assert checkpoint_format_name(params) == "direct"
    with pytest.raises(FactlabError, match="--answer_format spoken: unknown"):
        finetune("vanilla", corpus_files["wiki"], corpus_files["train"], tmp_path / "x.params", OPTIONS,
                 answer_format="spoken")
    assert not (tmp_path / "x.params").exists()


def test_marked_checkpoint_is_followed_by_the_analysis(corpus_files, tmp_path):
    """A model finetuned --answer_format recite-marked records its format; the analysis answers in it, names it
    in its summary and says what its confidence is the probability of."""
    from factlab.analysis import format_summary, run_analysis

    params = tmp_path / "marked.params"
    finetune("vanilla", corpus_files["wiki"], corpus_files["train"], params, OPTIONS, device="cpu",
             training=Training(max_epochs=1, batch_size=16), answer_format="recite-marked")
    assert checkpoint_format_name(params) == "recite-marked"
    result = run_analysis("vanilla", corpus_files["wiki"], params, corpus_files["dev"], ModelOptions(), device="cpu")
    assert result["summary"]["answer_format"] == "recite-marked" and "recitation" in result["records"][0]
    assert f"probability of {RECITE_MARKED.confidence}" in format_summary(result)


def test_an_evaluation_with_scores_is_analysed_without_decoding_again(corpus_files, tmp_path, monkeypatch):
    """reproduce --analyze decodes each question once: experiment.evaluate(with_scores=True) keeps the answers'
    probabilities (the same answers as without), and run_analysis given them decodes nothing and writes the
    analysis it would have written from its own decoding."""
    from factlab import experiment
    from factlab.analysis import run_analysis

    params = tmp_path / "recite.params"
    finetune("vanilla", corpus_files["wiki"], corpus_files["train"], params, OPTIONS, device="cpu",
             training=Training(max_epochs=1, batch_size=16), answer_format="recite")
    args = ("vanilla", corpus_files["wiki"], params, corpus_files["dev"], ModelOptions())
    plain = experiment.evaluate(*args, device="cpu")
    evaluation = experiment.evaluate(*args, device="cpu", with_scores=True)
    assert plain.scored is None and [s.answer for s in evaluation.scored] == evaluation.predictions == plain.predictions
    own = run_analysis(*args, device="cpu")
    monkeypatch.setattr(experiment, "answer", lambda *a, **k: pytest.fail("decoded again"))
    given = run_analysis(*args, device="cpu", answered=(evaluation.scored, evaluation.recitations))
    assert given == own
    with pytest.raises(FactlabError, match="answers given"):
        run_analysis(*args, device="cpu", answered=(evaluation.scored[:1], evaluation.recitations))
