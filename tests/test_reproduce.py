"""`factlab reproduce`: every variant's runs, predictions and a results table (Markdown and JSON) that agree with
the files written; recipes apply through the CLI and command-line options override them."""

from __future__ import annotations

import json

import pytest
import torch

from factlab import FactlabError
from factlab.checkpoint import read_config
from factlab.cli import main
from factlab.evaluate import london_baseline
from factlab.recipes import RECIPES, ModelOptions, Recipe, Training
from factlab.reproduce import DataFiles, reproduce, results_markdown

TINY = Recipe("tiny", "for the tests", ModelOptions(block_size=64, n_layer=2, n_head=2, n_embd=32, bottleneck_dim=8,
                                                   dropout=0.0),
              pretrain=Training(max_epochs=1, batch_size=32, learning_rate=3e-3),
              finetune=Training(max_epochs=1, batch_size=32, learning_rate=1e-3),
              scratch=Training(max_epochs=1, batch_size=32, learning_rate=1e-3))


def test_reproduce_all_variants(tmp_path, corpus_files):
    out = tmp_path / "out"
    rows = reproduce(DataFiles.in_dir(corpus_files["wiki"].parent), out, TINY,
                     variants=("vanilla", "synthesizer", "perceiver"), device="cpu", log=lambda _: None)
    dev = corpus_files["dev"].read_text().splitlines()
    golds = [line.split("\t")[1] for line in dev]
    assert [r["run"] for r in rows] == ["London baseline"] + [
        f"{v}: {run}" for v in ("vanilla", "synthesizer", "perceiver") for run in ("no pretraining",
                                                                                 "pretrain + finetune")]
    for r in rows:  # every row's score is the one its predictions file gives
        predictions = (out / r["predictions"]).read_text().splitlines()
        assert r["correct"] == sum(p == g for p, g in zip(predictions, golds)) and r["total"] == len(dev)
        if r["params"]:
            assert read_config(out / r["params"])[0].variant == r["variant"]
            assert r["model"] == read_config(out / r["params"])[0].to_dict()  # the resolved model, every option
            assert r["seconds"] > 0 and r["stage_seconds"]
    assert rows[0]["correct"] == sum(g == london_baseline([None])[0] for g in golds)
    n_test = len(corpus_files["test"].read_text().splitlines())
    assert len((out / "perceiver.pretrain.test.predictions").read_text().splitlines()) == n_test
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == rows and saved["recipe"]["name"] == "tiny"
    assert [r["model"]["synthesizer_b"] for r in rows if r["variant"] == "synthesizer"] == ["shared"] * 2
    assert (saved["corpus_path"], saved["eval_corpus_path"]) == ("wiki.txt", "birth_dev.tsv")  # never absolute
    assert saved["stages"]["pretrain"]["max_epochs"] == 1 and saved["stages"]["finetune"]["learning_rate"] == 1e-3
    assert saved["data_files"] == {"wiki": "wiki.txt", "train": "birth_places_train.tsv", "dev": "birth_dev.tsv",
                                   "test": "birth_test_inputs.tsv"}
    assert saved["hardware"]["cpu_count"] >= 1 and saved["hardware"]["torch"] == torch.__version__
    assert saved["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert saved["memory"]["peak_rss_mb"] > 100  # python and torch alone take more
    for r in rows[1:]:  # each checkpoint carries its training's peak; results.json has the highest
        trained = read_config(out / r["params"])[2]["result"]["memory"]["peak_rss_mb"]
        assert 100 < trained <= saved["memory"]["peak_rss_mb"]
    assert all(r["stage_seconds"]["finetune_tokens_per_s"] > 0 for r in rows if r["params"])
    assert all(r["stage_seconds"]["pretrain_steps"] > 0 for r in rows if r["run"].endswith("pretrain + finetune"))
    assert (out / "results.md").read_text().count("\n") == len(rows) + 2


def test_the_results_table_gives_each_runs_interval_and_training_speed():
    """results.md's row: the exact match with its 95% Wilson interval (102/500: 17.1-24.2%, as the README
    quotes), the wall-clock and the tokens/s of each stage trained; a row without training has none."""
    rows = [{"run": "London baseline", "correct": 25, "total": 500, "percent": 5.0, "seconds": 0.0,
             "stage_seconds": {}},
            {"run": "vanilla: pretrain + finetune", "correct": 102, "total": 500, "percent": 20.4, "seconds": 25509.6,
             "stage_seconds": {"pretrain": 25348.25, "pretrain_tokens_per_s": 4355.6, "finetune": 157.4,
                               "finetune_tokens_per_s": 4929.6}}]
    lines = results_markdown(rows).splitlines()
    assert lines[0] == "| run | dev exact match (95% interval) | wall-clock | training tokens/s |"
    assert lines[2] == "| London baseline | 25/500 = 5.0% (3.4–7.3%) | 0 s | – |"
    assert lines[3] == "| vanilla: pretrain + finetune | 102/500 = 20.4% (17.1–24.2%) | 25,510 s | pretrain 4,356, finetune 4,930 |"


def test_cpu_fast_recipe_through_the_cli(tmp_path, corpus_files):
    """--recipe sets the model and the hyperparameters; an option given on the command line wins; --precision
    and --micro_batch reach the trainer."""
    params = tmp_path / "p.params"
    args = ["pretrain", "vanilla", str(corpus_files["wiki"]), "--writing_params_path", str(params),
            "--recipe", "cpu-fast", "--max_epochs", "1", "--n_layer", "1", "--device", "cpu", "--precision", "bf16",
            "--micro_batch", "8"]
    assert main(args) == 0
    config, _, info = read_config(params)
    fast = RECIPES["cpu-fast"]
    assert (config.n_layer, config.n_embd, config.n_head) == (1, fast.model.n_embd, fast.model.n_head)
    assert info["train"]["max_epochs"] == 1
    assert info["train"]["learning_rate"] == fast.pretrain.learning_rate
    assert info["train"]["batch_size"] == fast.pretrain.batch_size
    assert info["train"]["weight_decay"] == fast.pretrain.weight_decay
    assert info["train"]["precision"] == "bf16"  # recorded with the weights
    assert (info["train"]["micro_batch"], info["train"]["batching"]) == (8, "length")
    assert main(args + ["--weight_decay", "0.05"]) == 0
    assert read_config(params)[2]["train"]["weight_decay"] == 0.05


def test_bad_data_dir_and_variant(tmp_path, corpus_files, capsys):
    with pytest.raises(FactlabError, match="birth_dev.tsv: not found"):
        corpus_files["dev"].unlink()
        DataFiles.in_dir(corpus_files["wiki"].parent)
    assert main(["reproduce", "--data_dir", str(tmp_path / "nowhere"), "--out_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("factlab: error: ") and "wiki.txt: not found" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_reproduce_resume_skips_finished_stages_and_continues_a_stopped_one(tmp_path, corpus_files, monkeypatch):
    """--resume: finished stages are not trained again (their checkpoints stay byte for byte), a stage stopped by
    a signal continues from its training state, and the results equal those of a run that was never stopped."""
    import factlab.train
    from factlab import experiment, state

    files = DataFiles.in_dir(corpus_files["wiki"].parent)
    quiet = dict(variants=("vanilla",), device="cpu", log=lambda _: None)
    whole = reproduce(files, tmp_path / "whole", TINY, **quiet)
    out = tmp_path / "stopped"
    reproduce(files, out, TINY, **quiet)
    finished = (out / "vanilla.nopretrain.params").read_bytes()
    for name in ("vanilla.pretrain.params", "vanilla.finetune.params"):
        (out / name).unlink()

    class StopAtTheFirstStep(factlab.train.StopSignals):  # as if Ctrl-C came during the first of two steps
        steps = 0

        @property
        def received(self):
            type(self).steps += 1
            return "SIGINT" if type(self).steps >= 1 else None

        @received.setter
        def received(self, value):
            pass

    with monkeypatch.context() as m:
        m.setattr(factlab.train, "StopSignals", StopAtTheFirstStep)
        with pytest.raises(experiment.RunInterrupted):
            experiment.pretrain("vanilla", files.wiki, out / "vanilla.pretrain.params", TINY.model, TINY.pretrain,
                                device="cpu")
    saved = state.load(state.state_path(out / "vanilla.pretrain.params"))
    assert saved["steps"] == 1
    # As if the first sitting had trained for 1,000 s in a process of 50 GB: the results count every sitting.
    state.save(state.state_path(out / "vanilla.pretrain.params"),
               {**saved, "elapsed": 1000.0, "memory": {"peak_rss_mb": 50_000.0}})
    said = []
    rows = reproduce(files, out, TINY, variants=("vanilla",), device="cpu", log=said.append, resume=True)
    assert any("vanilla.nopretrain.params: finished earlier" in line for line in said)
    assert (out / "vanilla.nopretrain.params").read_bytes() == finished
    strip = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "stage_seconds")}  # noqa: E731
    assert [strip(r) for r in rows] == [strip(r) for r in whole]
    scratch, pretrained = rows[1], rows[2]  # the first trained in the earlier sitting, the second partly
    assert scratch["seconds"] >= scratch["stage_seconds"]["finetune"] > 0
    assert pretrained["seconds"] > pretrained["stage_seconds"]["pretrain"] > 1000
    assert json.loads((out / "results.json").read_text())["memory"]["peak_rss_mb"] == 50_000.0
    from safetensors.torch import load_file

    resumed, uninterrupted = (load_file(str(d / "vanilla.pretrain.params")) for d in (out, tmp_path / "whole"))
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    assert not list(out.glob("*.state"))


def test_reproduce_on_a_validation_split_never_reads_dev(tmp_path, corpus_files, capsys):
    """--validation N: finetuning sees the training questions but N, the N are scored in place of dev, and no
    dev or test predictions are written; `factlab split` writes the same split."""
    out, data = tmp_path / "select", tmp_path / "data-without-dev"
    data.mkdir()
    for name in ("wiki", "train", "test"):
        (data / corpus_files[name].name).write_bytes(corpus_files[name].read_bytes())
    (data / corpus_files["dev"].name).write_text("a line without a tab\n")  # reading dev would fail
    rows = reproduce(DataFiles.in_dir(data), out, TINY, variants=("vanilla",), device="cpu", log=lambda _: None,
                     validation=20, micro_batch=4)
    train = corpus_files["train"].read_text().splitlines()
    held_out = (out / "validation.tsv").read_text().splitlines()
    rest = (out / "train.tsv").read_text().splitlines()
    assert len(held_out) == 20 and sorted(rest + held_out) == sorted(train) and not set(rest) & set(held_out)
    assert all(r["total"] == 20 and r["predictions"].endswith(".validation.predictions") for r in rows)
    assert not list(out.glob("*.dev.predictions")) and not list(out.glob("*.test.predictions"))
    saved = json.loads((out / "results.json").read_text())
    assert saved["scored_on"] == "validation" and saved["validation_split"]["questions"] == 20
    assert {stage["micro_batch"] for stage in saved["stages"].values()} == {4}  # how every stage was computed
    assert "validation exact match" in (out / "results.md").read_text()
    assert main(["split", "--finetune_corpus_path", str(corpus_files["train"]), "--out_dir", str(tmp_path / "s"),
                 "--validation", "20"]) == 0
    assert (tmp_path / "s" / "validation.tsv").read_text() == (out / "validation.tsv").read_text()
    assert main(["split", "--finetune_corpus_path", str(corpus_files["train"]), "--out_dir", str(tmp_path / "s"),
                 "--validation", str(len(train))]) == 2
    assert "a validation split of" in capsys.readouterr().err


def test_reproduce_analyzes_and_calibrates_a_final_run(tmp_path, corpus_files):
    """--analyze --calibrate: the pretrained model is also finetuned without the validation split, its answers
    to the split are analysed, and the final model's analysis (recall probe included) is calibrated on them when
    they hold right and wrong answers; the row and results.md carry the key numbers."""
    out = tmp_path / "final"
    said = []
    rows = reproduce(DataFiles.in_dir(corpus_files["wiki"].parent), out, TINY, variants=("vanilla",), device="cpu",
                     log=said.append, analyze=True, calibrate=15, scratch=False)
    assert [r["run"] for r in rows] == ["London baseline", "vanilla: pretrain + finetune"]
    final = rows[-1]
    assert (out / "calibration" / "validation.tsv").is_file() and (out / "vanilla.calibration.params").is_file()
    calibration = json.loads((out / "vanilla.calibration.analysis.json").read_text())
    assert calibration["meta"]["eval_corpus_path"].endswith("validation.tsv") and len(calibration["records"]) == 15
    analysis = json.loads((out / final["analysis"]["file"]).read_text())
    assert analysis["meta"]["recall_checkpoint"].endswith("vanilla.pretrain.params")
    assert final["analysis"]["recall"]["probed"] > 0 and final["analysis"]["accuracy"] == final["correct"] / final["total"]
    epochs = final["stage_seconds"]["pretrain_epochs"]  # TINY pretrains with span corruption, block 64
    exposures = [r["exposures"] for r in analysis["records"] if r["exposures"] is not None]
    assert exposures and all(0 <= e <= epochs for e in exposures)
    assert final["analysis"]["exposures_median"] == analysis["summary"]["exposures"]["median"]
    fitted = len({r["correct"] for r in calibration["records"]}) == 2
    assert ("ece_calibrated" in final["analysis"]) == fitted
    assert fitted or any(line.startswith("no calibration:") for line in said)
    assert "recalled by the pretrained model" in (out / "results.md").read_text()
    assert "calibration" in final["stage_seconds"] and "analysis" in final["stage_seconds"]
    with pytest.raises(FactlabError, match="--calibrate is for a final run"):
        reproduce(DataFiles.in_dir(corpus_files["wiki"].parent), out, TINY, calibrate=15, validation=20)


def test_a_final_run_starts_from_a_validation_runs_pretraining(tmp_path, corpus_files, capsys):
    """--pretrained_from: a run that pretrains as another did (model, pretraining settings, seed) copies that
    run's finished pretrained model instead of training one, says so in results.json and counts its time; any
    other pretraining, another seed, or a folder with its own pretrained model is refused in one line."""
    data, first, final = corpus_files["wiki"].parent, tmp_path / "select", tmp_path / "final"
    chosen = reproduce(DataFiles.in_dir(data), first, TINY, variants=("vanilla",), device="cpu", log=lambda _: None,
                       validation=20, scratch=False)[-1]
    other_finetuning = Recipe("tiny-ft", "the same pretraining", TINY.model, TINY.pretrain,
                              Training(max_epochs=1, batch_size=16, learning_rate=3e-4), TINY.scratch)
    row = reproduce(DataFiles.in_dir(data), final, other_finetuning, variants=("vanilla",), device="cpu",
                    log=lambda _: None, scratch=False, pretrained_from=first)[-1]
    assert (final / "vanilla.pretrain.params").read_bytes() == (first / "vanilla.pretrain.params").read_bytes()
    assert (final / "vanilla.pretrain.params.metrics.jsonl").is_file()
    assert json.loads((final / "results.json").read_text())["pretraining_from"] == "select"
    assert row["stage_seconds"]["pretrain"] == chosen["stage_seconds"]["pretrain"]
    assert row["predictions"].endswith(".dev.predictions")
    again = reproduce(DataFiles.in_dir(data), final, other_finetuning, variants=("vanilla",), device="cpu",
                      log=lambda _: None, scratch=False, resume=True, pretrained_from=first)[-1]
    assert again["correct"] == row["correct"]  # resumed: nothing trained again
    other_rate = Recipe("tiny-lr", "", TINY.model, Training(max_epochs=1, batch_size=32, learning_rate=1e-3),
                        TINY.finetune, TINY.scratch)
    for recipe_, seed, folder, message in [
            (other_rate, 0, tmp_path / "a", "pretrain.learning_rate 0.003 there, 0.001 here"),
            (TINY, 1, tmp_path / "b", r"seed 0 there, 1 here"),
            (TINY, 0, first, "is this run's own pretraining")]:
        with pytest.raises(FactlabError, match=message):
            reproduce(DataFiles.in_dir(data), folder, recipe_, variants=("vanilla",), device="cpu", seed=seed,
                      log=lambda _: None, scratch=False, pretrained_from=final if folder == first else first)
    assert main(["reproduce", "--data_dir", str(data), "--out_dir", str(tmp_path / "c"), "--variants", "vanilla",
                 "--pretrained_from", str(tmp_path / "nothing"), "--device", "cpu"]) == 2
    assert "no results.json there" in capsys.readouterr().err
