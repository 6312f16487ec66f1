"""Recipes (recipes.py): the course's settings are the base, recipes and the command line are layers over it,
resolved one way for the CLI and for reproduce, and a malformed recipe fails when it is made."""

from __future__ import annotations

import pytest

from factlab import FactlabError
from factlab.cli import parse_command_line, resolved
from factlab.recipes import COURSE, RECIPES, ModelOptions, Recipe, Training, recipe, train_config


def test_course_hyperparameters():
    """Defaults equal the course's run.py: pretrain 650 epochs, batch 128, lr 6e-3; finetune 75 epochs from
    scratch or 10 after pretraining, batch 256, lr 6e-4; warmup 512*20 tokens; final 200 * N * block tokens."""
    pre = train_config("pretrain", Training(), n_documents=1000, block_size=128)
    assert (pre.max_epochs, pre.batch_size, pre.learning_rate) == (650, 128, 6e-3)
    assert (pre.warmup_tokens, pre.final_tokens) == (512 * 20, 200 * 1000 * 128)
    assert (pre.betas, pre.weight_decay, pre.grad_norm_clip) == ((0.9, 0.95), 0.1, 1.0)
    assert (pre.lr_schedule, pre.weight_decay_groups, pre.batching, pre.micro_batch) == ("course", "course",
                                                                                        "course", None)
    for stage, epochs in (("scratch", 75), ("finetune", 10)):
        fine = train_config(stage, Training(), 1000, 128)
        assert (fine.max_epochs, fine.batch_size, fine.learning_rate) == (epochs, 256, 6e-4)
        assert (fine.warmup_tokens, fine.final_tokens) == (512 * 20, 200 * 1000 * 128)
    assert train_config("pretrain", Training(max_epochs=2), 10, 64, seed=3).max_epochs == 2
    assert train_config("pretrain", Training(decay_epochs=350), 10, 64).final_tokens == 350 * 10 * 64
    assert train_config("pretrain", Training(decay_epochs=350, final_tokens=7), 10, 64).final_tokens == 7


def test_course_recipe_is_the_default():
    assert recipe(None) is RECIPES["course"]
    for stage in COURSE:
        # the course's code has no autocast, on a GPU either; the CPU recipes keep the trainer's "auto"
        assert RECIPES["course"].resolved(stage) == (ModelOptions(), Training(precision="fp32"))
        assert RECIPES["cpu-fast"].resolved(stage)[1].precision is None


@pytest.mark.parametrize("bad,message", [
    (lambda: Training(batch_size=0), "batch_size=0: must be positive"),
    (lambda: Training(learning_rate="3e-4"), "learning_rate='3e-4': must be float"),
    (lambda: Training(max_epochs=2.5), "max_epochs=2.5: must be int"),
    (lambda: Training(lr_schedule="cosine"), "lr_schedule='cosine': unknown (known: course, floor)"),
    (lambda: Training(precision="fp16"), "precision='fp16': unknown"),
    (lambda: ModelOptions(n_layer=0), "n_layer=0: must be positive"),
    (lambda: ModelOptions(synthesizer_b="each"), "synthesizer_b='each': unknown (known: shared, per-head)"),
    (lambda: Recipe("r", "d", answer_format="essay"), "answer_format 'essay': unknown"),
    (lambda: recipe("cpu-faster"), "--recipe cpu-faster: unknown recipe (known: course, cpu-fast, cpu-recite, cpu-best, cpu-distill, cpu-direct)"),
])
def test_malformed_settings_fail_when_made(bad, message):
    with pytest.raises(FactlabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bad()


def test_a_misspelt_option_fails_at_import_time():
    with pytest.raises(TypeError, match="learnin_rate"):
        Training(learnin_rate=1e-3)


def test_command_line_layers_over_the_recipe():
    """The CLI resolves a recipe as reproduce does: the recipe's stage, then what the command line sets."""
    args = parse_command_line(["pretrain", "vanilla", "wiki.txt", "--writing_params_path", "p", "--recipe",
                               "cpu-fast", "--n_layer", "2", "--pretrain_lr", "1e-3", "--compile"])
    model, training = resolved(args, "pretrain")
    fast = RECIPES["cpu-fast"]
    assert model == ModelOptions(n_layer=2, n_head=4, n_embd=128, dropout=0.0)
    assert training == fast.pretrain.overridden_by(Training(learning_rate=1e-3, compile=True))
    assert (training.batch_size, training.lr_schedule, training.max_minutes) == (64, "floor", 54)
    per_head = parse_command_line(["pretrain", "synthesizer", "wiki.txt", "--writing_params_path", "p",
                                   "--synthesizer_b", "per-head"])
    assert resolved(per_head, "pretrain")[0] == ModelOptions(synthesizer_b="per-head")
    plain = parse_command_line(["finetune", "vanilla", "wiki.txt", "--writing_params_path", "p",
                                "--finetune_corpus_path", "t.tsv"])
    assert resolved(plain, "scratch") == (ModelOptions(), Training(precision="fp32"))


def test_cpu_recipes_name_factlabs_trainer_options():
    """The CPU recipes' documented numbers were measured with factlab's schedule, decay groups and
    length-grouped batches."""
    for name in ("cpu-fast", "cpu-recite"):
        for stage in COURSE:
            t = RECIPES[name].stage(stage)
            assert (t.lr_schedule, t.weight_decay_groups, t.batching) == ("floor", "matmul", "length")
    assert RECIPES["cpu-recite"].answer_format == "recite" and RECIPES["cpu-fast"].answer_format == "direct"


def test_the_selected_recipes_are_their_levers():
    """cpu-best pretrains as the lever recite-mix did (cpu-recite with pretrain.objective=mix), so its seed-0 run
    can start from that lever's pretrained model (reproduce --pretrained_from); so does cpu-direct, which is the
    lever distill-mix-ft-epochs-20: cpu-distill with 20 epochs of finetuning, taught by cpu-best's finetuning."""
    from factlab.recipes import overridden
    from factlab.reproduce import pretraining_identity

    best, direct = RECIPES["cpu-best"], RECIPES["cpu-direct"]
    lever = overridden(RECIPES["cpu-recite"], ["pretrain.objective=mix"])
    assert pretraining_identity(best, 0, None) == pretraining_identity(lever, 0, None)
    assert (best.finetune, best.answer_format) == (lever.finetune, "recite")
    assert pretraining_identity(direct, 0, None) == pretraining_identity(best, 0, None)
    chosen = overridden(RECIPES["cpu-distill"], ["finetune.max_epochs=20"])
    assert (direct.finetune, direct.teacher, direct.teacher_format, direct.answer_format) == \
        (chosen.finetune, best.finetune, "recite", "direct")


def test_pretraining_objective_and_question_mixing_through_the_cli(tmp_path, corpus_files, capsys):
    """--objective, --span_share and --question_share reach pretraining, are recorded in the checkpoint, and
    size the epoch: a question share of one half doubles its steps."""
    import json

    from factlab.checkpoint import read_config
    from factlab.cli import main

    base = ["pretrain", "vanilla", str(corpus_files["wiki"]), "--n_layer", "1", "--n_embd", "16", "--n_head", "2",
            "--block_size", "64", "--max_epochs", "1", "--batch_size", "16", "--device", "cpu"]

    def steps(params) -> int:
        return len((tmp_path / f"{params}.metrics.jsonl").read_text().splitlines())

    assert main(base + ["--writing_params_path", str(tmp_path / "span.params")]) == 0
    assert main(base + ["--writing_params_path", str(tmp_path / "lm.params"), "--objective", "lm"]) == 0
    assert read_config(tmp_path / "lm.params")[2]["pretraining"] == {"objective": "lm"}
    assert main(base + ["--writing_params_path", str(tmp_path / "mixed.params"), "--objective", "mix",
                        "--mix_questions", str(corpus_files["train"]), "--question_share", "0.5"]) == 0
    info = read_config(tmp_path / "mixed.params")[2]
    assert info["pretraining"] == {"objective": "mix", "span_share": 0.5, "question_share": 0.5, "non_ascii": "drop"}
    n_documents = len([line for line in corpus_files["wiki"].read_text().split("\n") if line.strip()])
    assert steps("span.params") == -(-n_documents // 16) and steps("mixed.params") == -(-2 * n_documents // 16)
    assert json.dumps(info["train"])  # the trainer's own settings are recorded beside them
    capsys.readouterr()
    assert main(base + ["--writing_params_path", str(tmp_path / "x.params"), "--question_share", "0.3"]) == 2
    assert "question_share 0.3: needs the questions to mix in (--mix_questions)" in capsys.readouterr().err
    assert main(base + ["--writing_params_path", str(tmp_path / "x.params"), "--question_share", "1"]) == 2
    assert "question_share=1.0: must be below 1" in capsys.readouterr().err
    assert main(base + ["--writing_params_path", str(tmp_path / "mostly-lm.params"), "--objective", "mix",
                        "--span_share", "0.2"]) == 0
    assert read_config(tmp_path / "mostly-lm.params")[2]["pretraining"] == {"objective": "mix", "span_share": 0.2}
    assert main(base + ["--writing_params_path", str(tmp_path / "x.params"), "--span_share", "0.2"]) == 2
    assert "span_share 0.2: applies to the objective mix only, not span" in capsys.readouterr().err
    assert main(base + ["--writing_params_path", str(tmp_path / "x.params"), "--objective", "mix",
                        "--span_share", "1"]) == 2
    assert "span_share=1.0: must be below 1" in capsys.readouterr().err
    assert main(base + ["--writing_params_path", str(tmp_path / "salient.params"), "--salient_share", "0.5"]) == 0
    assert read_config(tmp_path / "salient.params")[2]["pretraining"] == {"objective": "span", "salient_share": 0.5}
    capsys.readouterr()
    assert main(base + ["--writing_params_path", str(tmp_path / "x.params"), "--objective", "lm",
                        "--salient_share", "0.5"]) == 2
    assert "salient share 0.5: must be between 0 and 1, with the objective span or mix (not lm)" in \
        capsys.readouterr().err
    assert not (tmp_path / "x.params").exists()


def test_overrides_change_one_setting_of_a_recipe_typed():
    from factlab.recipes import overridden

    chosen = overridden(RECIPES["cpu-recite"], ["pretrain.objective=lm", "model.n_embd=256",
                                                 "finetune.learning_rate=3e-4", "pretrain.compile=true",
                                                 "answer_format=direct"])
    assert (chosen.pretrain.objective, chosen.model.n_embd, chosen.finetune.learning_rate) == ("lm", 256, 3e-4)
    assert chosen.pretrain.compile is True and chosen.answer_format == "direct"
    assert chosen.pretrain.max_minutes == RECIPES["cpu-recite"].pretrain.max_minutes  # the rest is the recipe's
    assert chosen.name == "cpu-recite pretrain.objective=lm model.n_embd=256 finetune.learning_rate=3e-4 " \
                          "pretrain.compile=true answer_format=direct"
    assert overridden(RECIPES["course"], []) is RECIPES["course"]
    per_head = overridden(RECIPES["course"], ["model.synthesizer_b=per-head"]).model
    assert per_head.config("synthesizer", 40).synthesizer_b == "per-head"
    assert RECIPES["course"].model.config("synthesizer", 40).synthesizer_b == "shared"  # the course's code
    for bad, message in (("pretrain.objectiv=lm", "expected STAGE.NAME=VALUE"), ("foo=1", "expected STAGE.NAME"),
                         ("pretrain.max_epochs=1.5", "'1.5' is not of type int"),
                         ("pretrain.objective=xx", "objective='xx': unknown"),
                         ("answer_format=essay", "answer_format 'essay': unknown")):
        with pytest.raises(FactlabError, match=message):
            overridden(RECIPES["course"], [bad])
