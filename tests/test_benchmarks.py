"""benchmarks/: the benchmark command runs end to end (--quick, synthetic corpus) and reports what it promises,
and the course's training loop it compares against computes the same loss as factlab's trainer."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import BLOCK, make_model, tiny_config

from factlab import FactlabError
from factlab import course_reference as course
from factlab.data import CharCorruptionDataset, NameDataset, QuestionMixture, collate
from factlab.recipes import Training
from factlab.train import TrainConfig, train

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def run_benchmark(*args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # modest, like the rest of the suite
    return subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_quick_benchmark_reports_every_measurement(corpus_files, tmp_path):
    out = tmp_path / "out" / "bench.json"
    # at least 5 timed steps per loop: the padding comparison below is over random corruptions, and on a loaded
    # machine --quick's 0.3 s may time a single batch of each loop (it failed once so, 0.594 against 0.583)
    proc = run_benchmark("--data", str(corpus_files["wiki"].parent), "--quick", "--min-steps", "5", "--json",
                         str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))

    machine = report["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["device"] == "cpu"
    assert machine["torch"] == torch.__version__ and machine["torch_threads"] >= 1
    assert report["settings"]["quick"] is True and report["model"]["n_layer"] == 2
    assert set(report["ratios"]) == {"pretrain_tokens_per_s", "finetune_tokens_per_s", "decode_time"}
    assert report["problems"] == []

    for phase in ("pretrain", "finetune"):
        r = report["train"][phase]
        for loop in ("factlab", "course"):
            m = r[loop]
            assert m["steps"] >= 1 and m["seconds"] > 0 and m["tokens_per_s"] > 0
            assert m["target_tokens"] <= m["input_tokens"] <= m["positions"]
            assert m["peak_rss_mb"] >= m["setup_rss_mb"] > 0
        # Both loops count the same thing: positions whose target is not PAD, over the same examples.
        assert r["same_count_definition"]
        assert r["factlab"]["target_tokens_per_pass"] == r["course"]["target_tokens_per_pass"] > 0
        assert r["course"]["positions"] == r["course"]["examples"] * (BLOCK * 2 - 1)  # quick: block 128
        assert r["factlab"]["pad_fraction_of_positions"] < r["course"]["pad_fraction_of_positions"]
        assert r["ratio"] == pytest.approx(r["factlab"]["tokens_per_s"] / r["course"]["tokens_per_s"], rel=0.01)
    assert report["train"]["pretrain"]["factlab"]["batch_size"] == 128
    assert report["train"]["finetune"]["course"]["batch_size"] == 256

    d = report["decode"]
    n_dev = len(corpus_files["dev"].read_text(encoding="utf-8").splitlines())
    assert d["factlab"]["questions"] == d["course"]["questions"] == n_dev
    assert d["answers_compared"] == d["course"]["questions_timed"] == 5 and d["answers_agree"] == 5
    assert d["course"]["extrapolated"] and d["ratio"] > 0
    assert "ratio" in proc.stdout and "pretrain" in proc.stdout and "dev questions" in proc.stdout


def test_benchmark_names_missing_data(tmp_path):
    proc = run_benchmark("--data", str(tmp_path), timeout=60)
    assert proc.returncode == 2 and "missing wiki.txt" in proc.stderr


def test_course_loop_and_factlab_trainer_compute_the_same_loss(pretrain_ds, corpus):
    """One batch holding the same 20 questions: the course's loop (padded to the block) and factlab's trainer
    (padded to the longest) compute the same first loss from the same weights."""
    questions = NameDataset(pretrain_ds, "\n".join(corpus.train.splitlines()[:20]) + "\n")
    model = make_model(tiny_config(len(pretrain_ds.vocab)))  # dropout 0
    reference = course.from_factlab(model)
    losses = {}

    def first_loss(name):
        def hook(module, args, output):
            losses.setdefault(name, output[1].item())  # the course model returns (logits, loss)
        return hook

    reference.register_forward_hook(first_loss("course"))
    widths = []
    reference.register_forward_pre_hook(lambda m, args: widths.append(args[0].size(1)))

    result = train(model, questions, TrainConfig(max_epochs=1, batch_size=32, learning_rate=1e-3,
                                                 final_tokens=10**6), progress=False)
    assert result.steps == 1  # so its final loss is its first
    course.Trainer(reference, questions, course.TrainerConfig(max_epochs=1, batch_size=32, learning_rate=1e-3,
                                                              lr_decay=True, warmup_tokens=10, final_tokens=10**6)
                   ).train()
    assert widths == [BLOCK - 1]
    assert result.final_loss == pytest.approx(losses["course"], abs=1e-5)


def test_padding_changes_neither_loss_nor_gradients(corpus):
    """Span-corruption examples drawn alike: the course model on the course's padded batch and factlab's model
    on its pad-to-longest batch give the same loss and the same gradient for every parameter."""
    dataset = CharCorruptionDataset(corpus.wiki, BLOCK, seed=0)
    dataset.rng = random.Random(3)
    xs, ys = zip(*[dataset[i] for i in range(8)])
    rng = random.Random(3)
    x, y = collate([dataset.example(i, rng) for i in range(8)])
    assert x.size(1) < BLOCK - 1
    model = make_model(tiny_config(len(dataset.vocab)))
    reference = course.from_factlab(model)

    _, loss = model(x, y)
    _, course_loss = reference(torch.stack(xs), torch.stack(ys))
    torch.testing.assert_close(loss, course_loss, rtol=0, atol=1e-6)
    loss.backward()
    course_loss.backward()
    grads = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-4, atol=1e-7, msg=name)


def test_mixed_pretraining_sees_every_document_and_question_each_epoch(corpus_files, tmp_path):
    import mixed_pretraining

    from factlab import checkpoint

    data = corpus_files["wiki"].parent
    wiki = CharCorruptionDataset(corpus_files["wiki"].read_text(encoding="utf-8"), 128)
    questions = NameDataset(wiki, corpus_files["train"].read_text(encoding="utf-8"))
    mixture = QuestionMixture(wiki, questions, len(questions) / (len(questions) + len(wiki)))  # the script's
    assert len(mixture) == len(wiki) + len(questions)

    out = tmp_path / "mixed.params"
    mixed_pretraining.main(["--data", str(data), "--out", str(out), "--epochs", "2", "--batch_size", "32"])
    rows = [json.loads(line) for line in Path(f"{out}.metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * -(-len(mixture) // 32) and rows[-1]["epoch"] == 2
    config, _, info = checkpoint.read_config(out)
    assert (config.n_layer, config.n_embd, info["stage"]) == (4, 128, "mixed pretraining")

    again = tmp_path / "more.params"  # continuing a checkpoint keeps its size and vocabulary
    mixed_pretraining.main(["--data", str(data), "--out", str(again), "--from", str(out), "--epochs", "1",
                            "--learning_rate", "6e-4", "--warmup_tokens", "0"])
    assert checkpoint.read_config(again)[0] == config and checkpoint.read_config(again)[2]["from"] == str(out)


def test_trainer_options_reports_each_option_set_against_the_first(corpus_files, capsys, step_clock):
    import trainer_options

    # the steady clock gives each option set the same steps however busy the machine is (under load the
    # machine's clock gave one step, fewer than the one skipped)

    data = str(corpus_files["wiki"].parent)
    size = ["--n_layer", "1", "--n_head", "2", "--n_embd", "32", "--batch_size", "16", "--skip-steps", "1"]
    assert trainer_options.main(["--data", data, "--options", "fp32,bf16", "--seconds", "1", *size]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "tokens/s" in line]
    assert [r.split(":")[0].strip() for r in rows] == ["fp32", "bf16"] and "1.00x" in rows[0]
    for bad in ("fp16", "fp32+micro0", "bf16+length+length", "bf16+sorted"):
        with pytest.raises(SystemExit):
            trainer_options.main(["--data", data, "--options", bad])
    assert trainer_options.training("bf16+micro16+length", 128, 45) == Training(
        precision="bf16", batch_size=128, micro_batch=16, batching="length", max_minutes=0.75)


@pytest.mark.parametrize("loop, precision", [("factlab", "bf16"), ("course", "fp32")])
def test_profile_splits_the_profiled_steps_into_categories(corpus_files, capsys, loop, precision):
    import profile_steps

    shares = profile_steps.main(["--data", str(corpus_files["wiki"].parent), "--loop", loop, "--phase", "pretrain",
                                 "--steps", "2", "--warmup-steps", "1", "--threads", "1", "--precision", precision,
                                 "--quick"])
    # The shares, "outside operators" included, cover the steps' time, and most of it has a named category.
    assert shares["linear layers: matmul (mm, addmm)"] > 0 and shares.get("other operators", 0.0) < 0.2
    assert sum(shares.values()) >= 0.99
    assert f"{loop} loop, pretrain: 2 steps of batch 128" in capsys.readouterr().out


def test_benchmark_scripts_name_a_missing_data_file_in_one_line(tmp_path, capsys):
    import ab_steps
    import profile_steps

    with pytest.raises(SystemExit):
        profile_steps.main(["--data", str(tmp_path), "--loop", "factlab", "--phase", "finetune"])
    assert f"{tmp_path}: missing wiki.txt, birth_places_train.tsv" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ab_steps.main(["--data", str(tmp_path), "--change", "fused-qkv"])
    assert f"{tmp_path / 'wiki.txt'}: not found" in capsys.readouterr().err


def test_ab_steps_times_a_change_against_the_model_as_it_is(corpus_files, capsys):
    import ab_steps

    data = str(corpus_files["wiki"].parent)
    fused = ab_steps.main(["--data", data, "--change", "fused-qkv", "--steps", "4", "--quick"])
    assert fused["steps"] == 2 and fused["A_us_per_token"] > 0 and fused["B_us_per_token"] > 0
    # Fusing the projections changes rounding only: both copies follow the same trajectory.
    assert fused["first_losses"]["B"] == pytest.approx(fused["first_losses"]["A"], rel=1e-4)
    assert "fused-qkv, fp32" in capsys.readouterr().out
    no_dropout = ab_steps.main(["--data", data, "--change", "no-dropout", "--steps", "3", "--quick"])
    assert no_dropout["first_losses"]["B"][0] != no_dropout["first_losses"]["A"][0]  # a different model
    # Compiled with static shapes: batches padded to a multiple of 32, each shape compiled before the timing.
    static = ab_steps.main(["--data", data, "--change", "compile-static", "--steps", "2", "--skip-steps", "1",
                            "--quick"])
    assert static["steps"] == 1 and static["B_us_per_token"] > 0
    assert static["first_losses"]["B"][0] == pytest.approx(static["first_losses"]["A"][0], rel=1e-2)
    with pytest.raises(SystemExit):
        ab_steps.main(["--data", data, "--change", "fused-qkv", "--steps", "2"])


def tiny_levers(monkeypatch):
    """benchmarks/levers.py with a one-layer recipe "tiny" to base its levers on."""
    import levers

    from factlab import recipes
    from factlab.recipes import ModelOptions, Recipe, Training

    tiny = Recipe("tiny", "for the tests", ModelOptions(block_size=64, n_layer=1, n_head=2, n_embd=16, dropout=0.0),
                  pretrain=Training(max_epochs=1, batch_size=32), finetune=Training(max_epochs=1, batch_size=32))
    monkeypatch.setitem(recipes.RECIPES, "tiny", tiny)
    return levers


def test_levers_run_on_the_validation_split_and_make_one_table(corpus_files, tmp_path, monkeypatch, capsys):
    """A lever is a reproduction with --validation: its row is scored on the held-out questions, analysed, and
    the table gathers every lever's folder."""
    levers = tiny_levers(monkeypatch)
    monkeypatch.setattr(levers, "LEVERS", {"base": ("tiny", [], "vanilla"),
                                           "lm": ("tiny", ["pretrain.objective=lm"], "vanilla"),
                                           "lm-ft": ("tiny", ["pretrain.objective=lm", "finetune.learning_rate=1e-3"],
                                                     "vanilla")})
    monkeypatch.setattr(levers, "VALIDATION_QUESTIONS", 10)
    levers.main(["--data", str(corpus_files["wiki"].parent), "--out", str(tmp_path), "--run", "base", "lm", "lm-ft",
                 "--table", "--device", "cpu"])
    table = (tmp_path / "levers.md").read_text()
    assert capsys.readouterr().out.endswith(table)
    rows = table.splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == [
        "| [base](base/results.json): `tiny` as it is", "| [lm](lm/results.json): `pretrain.objective=lm`",
        "| [lm-ft](lm-ft/results.json) (pretraining of lm): `pretrain.objective=lm`, `finetune.learning_rate=1e-3`"]
    assert all("/10 = " in r and r.count(" | ") == table.splitlines()[0].count(" | ") for r in rows)
    for row in rows:  # right among the recalled: of the recalled facts, how many the finetuned model answers
        recalled, right = row.split(" | ")[2:4]
        assert right.split("/")[1] == recalled.split("/")[0] and int(right.split("/")[0]) <= int(right.split("/")[1])
    assert not list(tmp_path.glob("*/*.dev.predictions"))
    # a lever that changes only the finetuning starts from the other's pretrained model, not from a new pretraining
    pretrained = [(tmp_path / lever / "vanilla.pretrain.params").read_bytes() for lever in ("lm", "lm-ft")]
    assert pretrained[0] == pretrained[1]
    assert json.loads((tmp_path / "lm-ft" / "results.json").read_text())["pretraining_from"] == "lm"
    assert "pretraining_from" not in json.loads((tmp_path / "base" / "results.json").read_text())
    assert levers.shared_source("lm-ft", tmp_path) is None  # it has its pretrained model now
    levers.run_lever("lm-ft", corpus_files["wiki"].parent, tmp_path, "cpu")  # run again: still says where it came from
    assert json.loads((tmp_path / "lm-ft" / "results.json").read_text())["pretraining_from"] == "lm"
    finetuned = [(tmp_path / lever / "vanilla.finetune.params").read_bytes() for lever in ("lm", "lm-ft")]
    assert finetuned[0] != finetuned[1]


def test_levers_table_replaces_the_table_of_a_page_with_links_from_the_page(corpus_files, tmp_path, monkeypatch):
    """--doc PAGE puts the same table in a documentation page, its links relative to the page, and leaves the
    rest of the page as it was; a page without a lever table is refused in one line and left alone."""
    levers = tiny_levers(monkeypatch)
    monkeypatch.setattr(levers, "LEVERS", {"base": ("tiny", [], "rope")})
    monkeypatch.setattr(levers, "VALIDATION_QUESTIONS", 10)
    data, out = str(corpus_files["wiki"].parent), tmp_path / "results" / "levers"
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("# Levers\n\n| lever | old |\n| --- | --- |\n| gone | 1 |\n\nAfter.\n")
    levers.main(["--data", data, "--out", str(out), "--run", "base", "--table", "--doc", str(page), "--device", "cpu"])
    text = page.read_text()
    assert text.startswith("# Levers\n\n| lever | validation exact match") and text.endswith("|\n\nAfter.\n")
    assert "gone" not in text and "| [base](../results/levers/base/results.json): `tiny` as it is (rope) |" in text
    assert text.replace("../results/levers/", "") == "# Levers\n\n" + (out / "levers.md").read_text() + "\nAfter.\n"
    bare = tmp_path / "docs" / "bare.md"
    bare.write_text("no table\n")
    with pytest.raises(FactlabError, match=r"bare\.md: has no lever table"):
        levers.main(["--data", data, "--out", str(out), "--table", "--doc", str(bare)])
    assert bare.read_text() == "no table\n"


COURSE_GPU = Path(__file__).resolve().parent.parent / "benchmarks" / "course_gpu.sh"
TINY_COURSE = " ".join(f"--override {o}" for o in (
    "model.n_layer=2", "model.n_head=2", "model.n_embd=16", "model.block_size=64", "model.bottleneck_dim=8",
    "pretrain.max_epochs=1", "finetune.max_epochs=1", "scratch.max_epochs=1"))


def course_gpu(data, tmp_path, deadline: str, extra: str = TINY_COURSE, **env_extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable, "DEVICE": "cpu", "EXTRA": extra,
           **env_extra}
    return subprocess.run(["bash", str(COURSE_GPU), str(data), str(tmp_path / "runs"), str(tmp_path / "out"),
                           deadline], capture_output=True, text=True, env=env, timeout=600,
                          cwd=COURSE_GPU.parent.parent)


def test_the_course_gpu_script_packs_every_variants_exported_run(corpus_files, tmp_path):
    """A rehearsal of the one-call GPU script on the CPU with a tiny course model: the four reproductions run
    side by side, each exits 0, and the archive holds each one's export (results.json with both trained rows and
    its predictions, no checkpoint) and log, with the machine and the wall-clock."""
    import tarfile

    proc = course_gpu(corpus_files["wiki"].parent, tmp_path, "300")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with tarfile.open(tmp_path / "out" / "course-runs.tgz") as archive:
        names = set(archive.getnames())
        machine = archive.extractfile("./machine.txt").read().decode()
        for variant in ("vanilla", "synthesizer", "perceiver", "rope"):
            assert f"course-{variant}: exit 0" in machine
            results = json.load(archive.extractfile(f"./course-{variant}/results.json"))
            assert [r["variant"] for r in results["rows"]] == ["baseline", variant, variant]
            assert results["recipe"]["name"].startswith("course ") and "analysis" in results["rows"][-1]
            assert f"./course-{variant}/{variant}.pretrain.test.predictions" in names
            assert f"./course-{variant}/reproduce.log" in names
    assert not any(n.endswith(".params") for n in names)
    assert "wall-clock: " in machine and machine == (tmp_path / "runs" / "machine.txt").read_text()


def test_the_course_gpu_script_stops_every_run_at_its_deadline(corpus_files, tmp_path):
    """Runs still going at the deadline are sent SIGTERM: they save their state (exit 143) and the archive is
    written all the same; VARIANTS picks the runs; a call without its arguments is refused in one line."""
    longer = TINY_COURSE.replace("pretrain.max_epochs=1", "pretrain.max_epochs=100000")
    proc = course_gpu(corpus_files["wiki"].parent, tmp_path, "30", longer, VARIANTS="rope synthesizer")
    assert proc.returncode == 0, proc.stderr[-3000:]
    machine = (tmp_path / "runs" / "machine.txt").read_text()
    assert machine.count(": exit 143") == 2 and "course-rope: exit 143" in machine, machine
    assert sorted(p.name for p in (tmp_path / "runs").glob("course-*") if p.is_dir()) == [
        "course-rope", "course-synthesizer"]
    assert (tmp_path / "out" / "course-runs.tgz").is_file()
    # by then the runs are pretraining (on a loaded machine one may still be starting)
    assert list((tmp_path / "runs").glob("course-*/*.pretrain.params.state"))
    usage = subprocess.run(["bash", str(COURSE_GPU)], capture_output=True, text=True)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: ")


def test_gpu_collapse_trains_each_setting_side_by_side_and_tables_them(corpus_files, tmp_path, capsys):
    """A CPU rehearsal of benchmarks/gpu_collapse.py with a tiny model: two settings (one of them with AdamW
    unfused by its switch) each pretrain 2 epochs in their own process; the JSON holds each one's exit code, epoch
    means and verdict, and the table a column per setting. An unknown setting is refused in one line."""
    import gpu_collapse

    out = tmp_path / "collapse"
    tiny = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--block_size", "64", "--batch_size", "16"]
    assert gpu_collapse.main(["--data", str(corpus_files["wiki"].parent), "--out", str(out), "--device", "cpu",
                              "--epochs", "2", "--settings", "fp32,bf16-unfused", "--extra", *tiny]) == 0
    report = json.loads((out / "gpu_collapse.json").read_text())
    assert list(report["settings"]) == ["fp32", "bf16-unfused"] and report["epochs"] == 2
    for name, r in report["settings"].items():
        assert r["exit"] == 0 and list(r["epoch_means"]) == ["1", "2"] and isinstance(r["rose"], bool), name
    assert report["settings"]["bf16-unfused"]["switches"] == {"precision": "bf16", "unfused_adamw": True}
    assert capsys.readouterr().out.startswith("| epoch | lr | fp32 | bf16-unfused |")
    with pytest.raises(SystemExit):
        gpu_collapse.main(["--data", str(corpus_files["wiki"].parent), "--out", str(out), "--settings", "fp16"])


def test_gpu_collapse_calls_a_rise_above_the_lowest_epoch_mean_a_collapse():
    import gpu_collapse

    means = {1: (3.0, None), 2: (2.0, None), 3: (2.5, None)}
    assert gpu_collapse.rose(means, 0.2) == {"lowest": 2.0, "at_epoch": 2, "highest_after": 2.5, "rose": True}
    assert gpu_collapse.rose(means, 0.6)["rose"] is False
    assert gpu_collapse.rose({1: (3.0, None), 2: (2.0, None)}, 0.2)["rose"] is False  # still falling
    assert gpu_collapse.rose({}, 0.2)["rose"] is None


def write_metrics(path: Path, losses_by_epoch: dict[int, list[float]]) -> Path:
    step = 0
    with open(path, "w", encoding="utf-8") as f:
        for epoch, losses in losses_by_epoch.items():
            for loss in losses:
                step += 1
                f.write(json.dumps({"step": step, "epoch": epoch, "loss": loss, "lr": 0.006 / epoch}) + "\n")
    return path


def test_epoch_losses_tables_each_files_epoch_means_and_leaves_out_unfinished_epochs(tmp_path, capsys):
    import epoch_losses

    run = write_metrics(tmp_path / "run.jsonl", {1: [3.0] * 5 + [2.0] * 5, 2: [1.5] * 10, 3: [1.0] * 3})
    course = write_metrics(tmp_path / "course.jsonl", {1: [4.0] * 10, 2: [2.5] * 10, 3: [2.0] * 10})
    png = tmp_path / "plots" / "curves.png"
    assert epoch_losses.main([str(run), str(course), "--names", "factlab", "course", "--plot", str(png)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "| epoch | lr | factlab | course |"
    assert rows[2:] == ["| 1 | 6.0e-03 | 2.500 | 4.000 |", "| 2 | 3.0e-03 | 1.500 | 2.500 |",
                        "| 3 | – | – | 2.000 |"]  # run's epoch 3 has 3 of its steps: not a mean to show
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert epoch_losses.main([str(run), str(course), "--epochs", "1"]) == 0  # and each file's last
    assert [row.split(" | ")[0] for row in capsys.readouterr().out.strip().splitlines()[2:]] == ["| 1", "| 2", "| 3"]


def test_epoch_losses_window_pools_each_epoch_with_the_ones_before_it(tmp_path, capsys):
    """--window 2 on a thinned file (2 rows an epoch): each epoch's mean is that of its rows and the previous
    epoch's, and min_steps counts the pooled rows; a window below 1 is refused."""
    import epoch_losses

    thinned = write_metrics(tmp_path / "thinned.jsonl", {1: [4.0, 4.0], 2: [2.0, 2.0], 3: [1.0, 3.0]})
    assert epoch_losses.main([str(thinned), "--window", "2", "--min_steps", "4"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    assert rows == ["| 2 | 3.0e-03 | 3.000 |", "| 3 | 2.0e-03 | 2.000 |"]  # epoch 1 alone has 2 rows: left out
    with pytest.raises(SystemExit):
        epoch_losses.main([str(thinned), "--window", "0"])


def test_epoch_losses_names_a_bad_line_in_one_line(tmp_path):
    import epoch_losses

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "epoch": 1, "loss": 3.0}\n{"step": 2, "loss": 2.9}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bad.jsonl: line 2: not a metrics row with epoch and loss"):
        epoch_losses.main([str(bad)])


def test_position_loss_bands_add_up_to_the_models_own_loss(corpus_files, corpus, tmp_path, capsys):
    """benchmarks/position_loss.py: per position, the summed losses and target counts of a checkpoint; over all
    positions they give the model's own mean loss on the same draws. The table has one row per checkpoint and
    one column per band; a checkpoint of another vocabulary is refused in one line."""
    import position_loss

    from factlab.checkpoint import save

    dataset = CharCorruptionDataset(corpus.wiki, BLOCK, seed=0)
    paths = []
    for variant in ("vanilla", "perceiver"):
        model = make_model(tiny_config(dataset.vocab_size, variant))
        paths.append(tmp_path / f"{variant}.params")
        save(paths[-1], model, dataset.vocab)
    draws = [dataset[i] for i in range(8)]
    x, y = torch.stack([d[0] for d in draws]), torch.stack([d[1] for d in draws])
    loss, counted = position_loss.position_losses(str(paths[1]), dataset.vocab, x, y)
    model = make_model(tiny_config(dataset.vocab_size, "perceiver")).eval()
    with torch.no_grad():
        _, own = model(x, y)
    assert loss.shape == counted.shape == (x.shape[1],)
    assert abs(loss.sum().item() / counted.sum().item() - own.item()) < 1e-5
    assert position_loss.main([*map(str, paths), "--corpus", str(corpus_files["wiki"]), "--draws", "16"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == f"| checkpoint | 0–15 | 16–31 | 32–47 | 48–{x.shape[1] - 1} |"
    assert [r.split(" | ")[0] for r in rows[2:]] == [f"| {p}" for p in paths]
    assert all(float(cell) > 0 for r in rows[2:] for cell in r.strip("| ").split(" | ")[1:])
    other = CharCorruptionDataset(corpus.wiki + "ж", BLOCK, seed=0)
    save(tmp_path / "other.params", make_model(tiny_config(other.vocab_size)), other.vocab)
    with pytest.raises(SystemExit, match=r"position_loss: .*other.params: checkpoint does not match: vocabulary"):
        position_loss.main([str(tmp_path / "other.params"), "--corpus", str(corpus_files["wiki"])])


def test_answer_start_splits_exact_match_by_question_length(tmp_path, capsys):
    """benchmarks/answer_start.py: a question whose text and ⁇ take at most --at characters falls in the first
    group, a longer one in the second; each cell counts its exact matches; a predictions file of another length
    is refused in one line naming it."""
    import answer_start

    questions = tmp_path / "dev.tsv"
    # "Where was Ann born?" is 19 characters, + ⁇ = 20; "Where was Annabelle Smith born?" is 31 (+ ⁇ = 32)
    questions.write_text("Where was Ann born?\tParis\nWhere was Bo born?\tRome\n"
                         "Where was Annabelle Smith born?\tOslo\nWhere was Annabelle Smithe born?\tLima\n",
                         encoding="utf-8")
    predictions = tmp_path / "model.dev.predictions"
    predictions.write_text("Paris\nLondon\nOslo\nLima\n", encoding="utf-8")
    assert answer_start.main(["--questions", str(questions), str(predictions), "--at", "32"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row.startswith(f"| {predictions} | 2/3 = 66.7% (") and row.endswith("| 1/1 = 100.0% (20.7–100.0%) |")
    assert answer_start.main(["--questions", str(questions), str(predictions), "--at", "20"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row.startswith(f"| {predictions} | 1/2 = 50.0% (") and "| 2/2 = 100.0% (" in row
    short = tmp_path / "short.dev.predictions"
    short.write_text("Paris\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"^answer_start: .*short.dev.predictions: 1 predictions for 4 questions$"):
        answer_start.main(["--questions", str(questions), str(short)])
