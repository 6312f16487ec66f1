"""Self-distillation (distill.py): the corpus's people by title, a teacher's labels for those the training
questions leave out, and a distilling recipe through `factlab reproduce`."""

from __future__ import annotations

import json

import pytest

from conftest import BLOCK
from factlab import FactlabError
from factlab.checkpoint import read_config
from factlab.data import corpus_names, document_title, parse_questions, question_name
from factlab.distill import label_corpus, usable_label
from factlab.experiment import ModelOptions, evaluate, finetune
from factlab.recipes import RECIPES, Recipe, Training, overridden
from factlab.reproduce import DataFiles, pretraining_identity, reproduce

OPTIONS = ModelOptions(block_size=BLOCK, n_layer=1, n_head=2, n_embd=16, dropout=0.0)


@pytest.mark.parametrize("document, title", [
    ("Khatchig Mouradian. Khatchig Mouradian is a journalist .", "Khatchig Mouradian"),
    ("Douglas P. Fry. Douglas P Fry (born 20 September 1953 in Boston) .", "Douglas P. Fry"),
    ("J.C. Patterson. Born in Armagh, Ireland in 1839, Patterson .", "J.C. Patterson"),
    ("A. G. E. Blake. Anthony Blake was born in the UK .", "A. G. E. Blake"),
    ("Moses Mason, Jr.. Moses Mason was born in Dublin .", "Moses Mason, Jr."),
    ("Vincenzo Re. Vincenzo Re (1695--1762) was an Italian painter .", "Vincenzo Re"),
    ("Anastasius I. Pope Saint Anastasius I, born in Rome .", "Anastasius I"),
    ("no title here", None),
])
def test_document_title_is_the_name_before_the_first_period_that_ends_a_name(document, title):
    assert document_title(document) == title


def test_corpus_names_are_the_people_of_every_question_file(corpus, corpus_files):
    asked = [question_name(line.split("\t")[0]) for key in ("train", "dev", "test")
             for line in corpus_files[key].read_text().splitlines()]
    names = corpus_names(corpus.wiki)
    assert len(names) == len(set(names)) and set(names) == set(asked)


def test_usable_labels_are_one_line_of_something():
    assert usable_label("Paris") and usable_label("Port Velan")
    for bad in ("", "  ", "Pa\tris", "Pa\nris", "Pa\u2047", "\u25a1"):
        assert not usable_label(bad)


@pytest.fixture()
def teacher(corpus_files, tmp_path):
    params = tmp_path / "teacher.params"
    finetune("vanilla", corpus_files["wiki"], corpus_files["train"], params, OPTIONS,
             training=Training(max_epochs=1, batch_size=32), device="cpu", answer_format="recite")
    return params


def test_the_teacher_labels_every_person_the_training_questions_leave_out(corpus, corpus_files, teacher,
                                                                         tmp_path):
    """The labelled file is the training questions as they are, then every other person of the corpus with the
    answer the teacher gives when asked alone (what `evaluate` writes); only the training file is read."""
    out = tmp_path / "labelled.tsv"
    counts = label_corpus(teacher, "vanilla", corpus_files["wiki"], corpus_files["train"], out, OPTIONS, "cpu")
    train = corpus_files["train"].read_text()
    text = out.read_text(encoding="utf-8")
    assert text.startswith(train)
    labelled = parse_questions(text[len(train):], "labelled") if text != train else []
    trained_on = {question_name(line.split("\t")[0]) for line in train.splitlines()}
    others = [n for n in corpus_names(corpus.wiki) if n not in trained_on]
    assert (counts.questions, counts.people, counts.labelled) == (len(train.splitlines()), len(others),
                                                                  len(labelled))
    assert {question_name(q.question) for q in labelled} <= set(others)
    asked = tmp_path / "others.tsv"
    asked.write_text("".join(f"Where was {n} born?\n" for n in others), encoding="utf-8")
    said = dict(zip(others, evaluate("vanilla", corpus_files["wiki"], teacher, asked, OPTIONS,
                                     device="cpu").predictions))
    assert all(q.answer == said[question_name(q.question)].strip() for q in labelled)
    assert len(labelled) == sum(usable_label(a) for a in said.values())


def test_labelling_nobody_or_into_an_unwritable_place_is_one_line(corpus, corpus_files, teacher, tmp_path):
    everyone = tmp_path / "everyone.tsv"
    everyone.write_text("".join(f"Where was {n} born?\tParis\n" for n in corpus_names(corpus.wiki)))
    with pytest.raises(FactlabError, match="every person of the corpus is asked about"):
        label_corpus(teacher, "vanilla", corpus_files["wiki"], everyone, tmp_path / "x.tsv", OPTIONS, "cpu")
    assert not (tmp_path / "x.tsv").exists()
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(FactlabError, match="taken"):
        label_corpus(teacher, "vanilla", corpus_files["wiki"], corpus_files["train"], tmp_path / "taken" / "x.tsv",
                     OPTIONS, "cpu")


TINY_DISTILL = Recipe("tiny-distill", "for the tests", OPTIONS,
                      pretrain=Training(max_epochs=1, batch_size=32), finetune=Training(max_epochs=1, batch_size=32),
                      teacher_format="recite", teacher=Training(max_epochs=2, batch_size=16))


def test_a_distilling_recipe_through_reproduce(corpus_files, tmp_path):
    """The teacher finetunes in its format with its settings, labels the corpus's other people (the validation
    people among them) and the model finetunes in the recipe's format on that file; results.json records the
    teacher's stage and times; a resumed run keeps the labels it has."""
    out = tmp_path / "out"
    files = DataFiles.in_dir(corpus_files["wiki"].parent)
    logged = []
    rows = reproduce(files, out, TINY_DISTILL, device="cpu", scratch=False, validation=10, log=logged.append)
    teacher = read_config(out / "vanilla.finetune.teacher.params")[2]
    student = read_config(out / "vanilla.finetune.params")[2]
    assert (teacher["answer_format"], teacher["train"]["max_epochs"], teacher["train"]["batch_size"]) == \
        ("recite", 2, 16)
    assert (student["answer_format"], student["train"]["max_epochs"]) == ("direct", 1)
    labelled = (out / "vanilla.finetune.labelled.tsv").read_text(encoding="utf-8")
    assert labelled.startswith((out / "train.tsv").read_text())
    def names(path):
        return [question_name(line.split("\t")[0]) for line in path.read_text().splitlines()]

    validation, trained_on = names(out / "validation.tsv"), set(names(out / "train.tsv"))
    asked = [n for n in corpus_names(files.wiki.read_text()) if n not in trained_on]
    assert set(validation) <= set(asked)  # the validation people are asked, and answered by the teacher alone
    said = [line for line in logged if line.startswith("vanilla.finetune.labelled.tsv: ")]
    assert said == [f"vanilla.finetune.labelled.tsv: {len(trained_on)} questions and "
                    f"{len(labelled.splitlines()) - len(trained_on)} of {len(asked)} other people of the corpus, "
                    "labelled by the teacher"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["recipe"]["teacher_format"] == "recite" and saved["stages"]["teacher"]["max_epochs"] == 2
    seconds = rows[-1]["stage_seconds"]
    assert seconds["teaching"] >= seconds["teacher"] > 0
    assert seconds["labelled"] == len(labelled.splitlines()) - len(trained_on)
    logged.clear()
    reproduce(files, out, TINY_DISTILL, device="cpu", scratch=False, validation=10, log=logged.append, resume=True)
    assert not any("labelled.tsv: " in line for line in logged)
    assert (out / "vanilla.finetune.labelled.tsv").read_text(encoding="utf-8") == labelled


def test_cpu_distill_pretrains_as_cpu_best_and_teaches_with_its_finetuning():
    """So the distilling lever starts from the pretrained model of the lever recite-mix (no second hour)."""
    best, distill = RECIPES["cpu-best"], RECIPES["cpu-distill"]
    assert pretraining_identity(distill, 0, None) == pretraining_identity(best, 0, None)
    assert (distill.teacher, distill.teacher_format) == (best.finetune, best.answer_format)
    assert distill.answer_format == "direct"
    changed = overridden(distill, ["teacher.learning_rate=3e-4", "teacher_format=recite-marked"])
    assert (changed.teacher.learning_rate, changed.teacher_format) == (3e-4, "recite-marked")
    with pytest.raises(FactlabError, match="teacher_format 'essay': unknown"):
        overridden(distill, ["teacher_format=essay"])
    assert "teacher" not in json.dumps(pretraining_identity(distill, 0, None))


def test_label_through_the_cli(corpus_files, teacher, tmp_path, capsys):
    """`factlab label` writes what label_corpus writes and says how many it labelled; a bad output path or a
    teacher of another variant is one line, and nothing is written."""
    from factlab.cli import main

    out = tmp_path / "labelled.tsv"
    args = ["label", "vanilla", str(corpus_files["wiki"]), "--reading_params_path", str(teacher),
            "--finetune_corpus_path", str(corpus_files["train"]), "--device", "cpu"]
    assert main(args + ["--outputs_path", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out}: ") and "other people of the corpus, labelled by the teacher" in said
    assert out.read_text(encoding="utf-8").startswith(corpus_files["train"].read_text())
    assert main(args + ["--outputs_path", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    args[1] = "rope"
    assert main(args + ["--outputs_path", str(tmp_path / "other.tsv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("factlab: error: ") and err.strip().count("\n") == 0 and str(teacher) in err
    assert not (tmp_path / "other.tsv").exists()
