"""The `factlab` command end to end on a tiny synthetic corpus, through factlab.cli.main([...]):
pretrain -> finetune -> evaluate for every variant, the London baseline, and one-line errors that leave
existing outputs untouched."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import sys

import pytest
from hypothesis import given, settings, strategies as st

from conftest import tiny_corpus
from factlab import checkpoint
from factlab.cli import main
from factlab.statistics import mcnemar_exact

TINY = ["--block_size", "128", "--n_layer", "2", "--n_head", "2", "--n_embd", "32", "--device", "cpu"]
TRAIN = ["--max_epochs", "1", "--batch_size", "32"]
SCORE = re.compile(r"^Correct: (\d+) out of (\d+): ([0-9.]+)%$")


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def quiet(*args) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main([str(a) for a in args])


def variant_options(variant: str) -> list[str]:
    return ["--bottleneck_dim", "8"] if variant == "perceiver" else []


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Corpus files plus a pretrained and a finetuned vanilla checkpoint, made once for the module."""
    root = tmp_path_factory.mktemp("cli")
    files = tiny_corpus().write(root / "data")
    files["pre"], files["ft"] = root / "pre.params", root / "ft.params"
    assert quiet("pretrain", "vanilla", files["wiki"], "--writing_params_path", files["pre"], *TINY, *TRAIN) == 0
    assert quiet("finetune", "vanilla", files["wiki"], "--reading_params_path", files["pre"],
                 "--finetune_corpus_path", files["train"], "--writing_params_path", files["ft"],
                 *TINY, "--max_epochs", "2", "--batch_size", "32") == 0
    return files


def n_lines(path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_pretrain_writes_checkpoint_and_metrics(tmp_path, work, capsys):
    """pretrain reports its steps, writes the checkpoint and PARAMS.metrics.jsonl beside it; stderr stays empty."""
    params = tmp_path / "p.params"
    code, out, err = run(capsys, "pretrain", "vanilla", work["wiki"], "--writing_params_path", params, *TINY, *TRAIN)
    assert code == 0 and err == ""
    assert out.startswith("pretrain: 2 steps") and str(params) in out
    config, _, info = checkpoint.read_config(params)
    assert (config.variant, config.n_layer, config.n_embd, config.block_size) == ("vanilla", 2, 32, 128)
    assert info["stage"] == "pretrain" and info["train"]["max_epochs"] == 1
    metrics = tmp_path / "p.params.metrics.jsonl"
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2]


def test_evaluate_dev_prints_course_score(tmp_path, work, capsys):
    """evaluate prints 'Correct: C out of N: P%' with N the dev questions and writes N prediction lines."""
    outputs = tmp_path / "dev.predictions"
    code, out, err = run(capsys, "evaluate", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                         "--eval_corpus_path", work["dev"], "--outputs_path", outputs, "--device", "cpu")
    assert code == 0 and err == ""
    match = SCORE.match(out.strip())
    assert match, out
    correct, total, percent = int(match[1]), int(match[2]), float(match[3])
    assert total == n_lines(work["dev"]) == n_lines(outputs)
    assert 0 <= correct <= total and percent == pytest.approx(100 * correct / total)
    gold = [line.split("\t")[1] for line in work["dev"].read_text().splitlines()]
    predictions = outputs.read_text(encoding="utf-8").splitlines()
    assert correct == sum(g == p for g, p in zip(gold, predictions))
    assert work["ft"].with_name("ft.params.metrics.jsonl").is_file()


def test_evaluate_test_inputs_without_answers(tmp_path, work, capsys):
    """A question-only file is answered and written, with the no-targets message instead of a score."""
    outputs = tmp_path / "test.predictions"
    code, out, err = run(capsys, "evaluate", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                         "--eval_corpus_path", work["test"], "--outputs_path", outputs, "--device", "cpu")
    assert code == 0 and err == ""
    assert "No gold birth places provided" in out and "nothing to score" in out and str(outputs) in out
    assert n_lines(outputs) == n_lines(work["test"])


def test_london_baseline(tmp_path, work, capsys):
    """london prints the course line with the number of gold answers that are exactly 'London'."""
    dev = tmp_path / "dev_with_london.tsv"  # add a few Londoners (and a near miss) to the tiny dev split
    dev.write_text(work["dev"].read_text() + "Where was Ab born?\tLondon\nWhere was Cd born?\tLondon\n"
                   "Where was Ef born?\tNew London\nWhere was Gh born?\tLondon\n", encoding="utf-8")
    gold = [line.split("\t")[1] for line in dev.read_text().splitlines()]
    outputs = tmp_path / "london.predictions"
    code, out, err = run(capsys, "london", "--eval_corpus_path", dev, "--outputs_path", outputs)
    assert code == 0 and err == ""
    expected = gold.count("London")
    assert expected == work["dev"].read_text().count("\tLondon\n") + 3
    assert out.strip() == f"Correct: {expected} out of {len(gold)}: {100.0 * expected / len(gold)}%"
    assert outputs.read_text().splitlines() == ["London"] * len(gold)


def test_finetune_from_scratch(tmp_path, corpus_files, capsys):
    """finetune without --reading_params_path trains a fresh model on the questions."""
    params = tmp_path / "scratch.params"
    code, out, err = run(capsys, "finetune", "vanilla", corpus_files["wiki"], "--finetune_corpus_path",
                         corpus_files["train"], "--writing_params_path", params, *TINY, *TRAIN)
    assert code == 0 and err == "" and out.startswith("finetune: 2 steps")
    assert checkpoint.read_config(params)[2]["stage"] == "finetune"
    assert (tmp_path / "scratch.params.metrics.jsonl").is_file()


def test_finetuning_drops_non_ascii_as_the_course_unless_asked_to_keep_it(tmp_path, corpus_files, capsys):
    """The course's NameDataset drops the finetuning questions' non-ASCII characters, and so does the default (a
    character wiki.txt lacks is then no error); --non_ascii keep reads them, and the checkpoint says which."""
    questions = tmp_path / "q.tsv"
    lines = corpus_files["train"].read_text(encoding="utf-8")
    questions.write_text(lines + "Where was Zoë Ŋ born?\tOslo\n", encoding="utf-8")
    assert "Ŋ" not in corpus_files["wiki"].read_text(encoding="utf-8")
    params = tmp_path / "dropped.params"
    code, _, err = run(capsys, "finetune", "vanilla", corpus_files["wiki"], "--finetune_corpus_path", questions,
                       "--writing_params_path", params, *TINY, *TRAIN)
    assert code == 0 and err == "" and checkpoint.read_config(params)[2]["non_ascii"] == "drop"
    code, _, err = run(capsys, "finetune", "vanilla", corpus_files["wiki"], "--finetune_corpus_path", questions,
                       "--writing_params_path", tmp_path / "kept.params", *TINY, *TRAIN, "--non_ascii", "keep")
    n = lines.count("\n") + 1
    assert code == 2 and err.count("\n") == 1 and f"{questions}:{n}: character 'ë'" in err


@pytest.mark.parametrize("variant", ["synthesizer", "perceiver", "rope"])
def test_variant_end_to_end(tmp_path, work, capsys, variant):
    """pretrain -> finetune -> evaluate works for the other two variants (perceiver with 8 latents)."""
    pre, ft, outputs = tmp_path / "pre.params", tmp_path / "ft.params", tmp_path / "dev.predictions"
    extra = variant_options(variant)
    assert run(capsys, "pretrain", variant, work["wiki"], "--writing_params_path", pre, *TINY, *extra,
               *TRAIN)[0] == 0
    assert run(capsys, "finetune", variant, work["wiki"], "--reading_params_path", pre, "--finetune_corpus_path",
               work["train"], "--writing_params_path", ft, *TINY, *TRAIN)[0] == 0
    code, out, err = run(capsys, "evaluate", variant, work["wiki"], "--reading_params_path", ft,
                         "--eval_corpus_path", work["dev"], "--outputs_path", outputs, "--device", "cpu")
    assert code == 0 and err == "" and SCORE.match(out.strip())
    assert n_lines(outputs) == n_lines(work["dev"])
    assert checkpoint.read_config(ft)[0].variant == variant


# ---------------------------------------------------------------- errors


def bad_file(tmp_path, name, text=None, data=None):
    path = tmp_path / name
    path.write_bytes(data if data is not None else text.encode("utf-8"))
    return path


def with_metadata(tmp_path, work, name, **changes):
    """The finetuned checkpoint's weights saved under `name` with its metadata changed (None deletes an entry)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(work["ft"]), framework="pt") as f:
        meta = dict(f.metadata())
    meta.update({k: v for k, v in changes.items() if v is not None})
    for k in [k for k, v in changes.items() if v is None]:
        del meta[k]
    save_file(load_file(str(work["ft"])), str(tmp_path / name), metadata=meta)
    return tmp_path / name


def evaluate_with(checkpoint_path, w, variant="vanilla"):
    return ["evaluate", variant, w["wiki"], "--reading_params_path", checkpoint_path, "--eval_corpus_path", w["dev"],
            "--device", "cpu"]


def vocab_json(work, edit):
    from safetensors import safe_open

    with safe_open(str(work["ft"]), framework="pt") as f:
        itos = json.loads(f.metadata()["vocab"])
    return json.dumps(edit(itos), ensure_ascii=False)


ERROR_CASES = {
    # name: (builder(tmp_path, work) -> (args, path the message must name), output flag the case protects)
    "malformed tsv line": lambda t, w: (
        ["finetune", "vanilla", w["wiki"], "--finetune_corpus_path",
         bad_file(t, "bad.tsv", "Where was Ab born?\tParis\nWhere was Cd born? Oslo\n"), *TINY, *TRAIN],
        f"{t / 'bad.tsv'}:2", "--writing_params_path"),
    "unknown character in tsv": lambda t, w: (
        ["finetune", "vanilla", w["wiki"], "--finetune_corpus_path",
         bad_file(t, "bad.tsv", "Where was Ab born?\tParis\nWhere was Zoë born?\tOslo\n"), *TINY, *TRAIN,
         "--non_ascii", "keep"],  # the course's default drops the ë
        f"{t / 'bad.tsv'}:2", "--writing_params_path"),
    "empty wiki": lambda t, w: (
        ["pretrain", "vanilla", bad_file(t, "empty.txt", ""), *TINY, *TRAIN], str(t / "empty.txt"),
        "--writing_params_path"),
    "missing wiki": lambda t, w: (
        ["pretrain", "vanilla", t / "missing.txt", *TINY, *TRAIN], str(t / "missing.txt"), "--writing_params_path"),
    "non-utf8 tsv": lambda t, w: (
        ["finetune", "vanilla", w["wiki"], "--finetune_corpus_path", bad_file(t, "latin1.tsv", data=b"Z\xfcrich\tX\n"),
         *TINY, *TRAIN], str(t / "latin1.tsv"), "--writing_params_path"),
    "missing eval file": lambda t, w: (
        ["evaluate", "vanilla", w["wiki"], "--reading_params_path", w["ft"], "--eval_corpus_path",
         t / "missing.tsv", "--device", "cpu"], str(t / "missing.tsv"), "--outputs_path"),
    "missing checkpoint": lambda t, w: (
        ["evaluate", "vanilla", w["wiki"], "--reading_params_path", t / "missing.params", "--eval_corpus_path",
         w["dev"], "--device", "cpu"], str(t / "missing.params"), "--outputs_path"),
    "checkpoint of another variant": lambda t, w: (
        ["evaluate", "synthesizer", w["wiki"], "--reading_params_path", w["ft"], "--eval_corpus_path", w["dev"],
         "--device", "cpu"], str(w["ft"]), "--outputs_path"),
    "checkpoint of another size": lambda t, w: (
        ["evaluate", "vanilla", w["wiki"], "--reading_params_path", w["ft"], "--eval_corpus_path", w["dev"],
         "--n_layer", "3", "--device", "cpu"], str(w["ft"]), "--outputs_path"),
    "finetune from a checkpoint of another variant": lambda t, w: (
        ["finetune", "perceiver", w["wiki"], "--reading_params_path", w["pre"], "--finetune_corpus_path",
         w["train"], *TRAIN], str(w["pre"]), "--writing_params_path"),
    "truncated checkpoint": lambda t, w: (
        ["evaluate", "vanilla", w["wiki"], "--reading_params_path",
         bad_file(t, "cut.params", data=w["ft"].read_bytes()[:5000]), "--eval_corpus_path", w["dev"],
         "--device", "cpu"], str(t / "cut.params"), "--outputs_path"),
    "corrupt checkpoint": lambda t, w: (
        evaluate_with(bad_file(t, "noise.params", data=bytes(range(256)) * 40), w), str(t / "noise.params"),
        "--outputs_path"),
    "checkpoint config not JSON": lambda t, w: (
        evaluate_with(with_metadata(t, w, "c.params", config="{not json"), w), str(t / "c.params"), "--outputs_path"),
    "checkpoint without config": lambda t, w: (
        evaluate_with(with_metadata(t, w, "c.params", config=None), w), str(t / "c.params"), "--outputs_path"),
    "checkpoint vocabulary without PAD and MASK first": lambda t, w: (
        evaluate_with(with_metadata(t, w, "c.params", vocab=vocab_json(w, lambda v: v[1:] + v[:1])), w),
        str(t / "c.params"), "--outputs_path"),
    "checkpoint vocabulary with a repeated character": lambda t, w: (
        evaluate_with(with_metadata(t, w, "c.params", vocab=vocab_json(w, lambda v: v[:-1] + [v[2]])), w),
        str(t / "c.params"), "--outputs_path"),
    "checkpoint vocabulary of another size than its config": lambda t, w: (
        evaluate_with(with_metadata(t, w, "c.params", vocab=vocab_json(w, lambda v: v[:-1])), w),
        str(t / "c.params"), "--outputs_path"),
    "checkpoint of another corpus's vocabulary": lambda t, w: (
        evaluate_with(with_metadata(t, w, "c.params", vocab=vocab_json(w, lambda v: v[:2] + v[3:] + ["\u00e6"])),
                      w), str(t / "c.params"), "--outputs_path"),
    "a folder where the question file should be": lambda t, w: (
        ["evaluate", "vanilla", w["wiki"], "--reading_params_path", w["ft"], "--eval_corpus_path", w["wiki"].parent,
         "--device", "cpu"], str(w["wiki"].parent), "--outputs_path"),
    "resume without a training state": lambda t, w: (
        ["pretrain", "vanilla", w["wiki"], *TINY, *TRAIN, "--resume"], "no training state", "--writing_params_path"),
}


def test_crlf_question_file_reads_as_lf(tmp_path, work, capsys):
    """A question file saved with Windows line endings scores exactly as the same file with LF endings."""
    crlf = bad_file(tmp_path, "dev.crlf.tsv", data=work["dev"].read_bytes().replace(b"\n", b"\r\n"))
    scores = [run(capsys, "evaluate", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                  "--eval_corpus_path", questions, "--device", "cpu")[1] for questions in (work["dev"], crlf)]
    assert scores[0] == scores[1] and SCORE.match(scores[0].strip())


@pytest.mark.parametrize("where", ["/proc/factlab-test/out.params", "{file}/out.params"])
def test_unwritable_output_path_fails_before_training(tmp_path, work, capsys, where):
    """An output path that cannot be written (a read-only filesystem, a file where a folder should be) is one
    line naming it, before any training."""
    (tmp_path / "file").write_text("a file")
    target = where.format(file=tmp_path / "file")
    code, out, err = run(capsys, "pretrain", "vanilla", work["wiki"], "--writing_params_path", target, *TINY, *TRAIN)
    assert code == 2 and out == "" and err.count("\n") == 1 and target in err, err


def test_truncated_training_state_is_one_line(tmp_path, work, capsys):
    params = tmp_path / "p.params"
    (tmp_path / "p.params.state").write_bytes(b"PK\x03\x04 cut short")
    code, _, err = run(capsys, "pretrain", "vanilla", work["wiki"], "--writing_params_path", params, *TINY, *TRAIN,
                       "--resume")
    assert code == 2 and err.count("\n") == 1 and "p.params.state: truncated or corrupt training state" in err


@pytest.mark.parametrize("case", ERROR_CASES)
def test_errors_are_one_line_and_leave_outputs_alone(tmp_path, work, capsys, case):
    """Exit code 2, exactly one stderr line 'factlab: error: ...' naming the file, no traceback, nothing on
    stdout, and the existing output file byte-identical (no metrics file or temp file appears)."""
    args, named, output_flag = ERROR_CASES[case](tmp_path, work)
    output = tmp_path / "existing.out"
    output.write_bytes(b"precious \xe2\x9c\x93 contents\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run(capsys, *args, output_flag, output)
    assert code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("factlab: error: ") and named in err, err
    assert "Traceback" not in err
    assert output.read_bytes() == b"precious \xe2\x9c\x93 contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_output_path_is_a_directory(tmp_path, work, capsys):
    """Writing the checkpoint to a directory fails before any training, naming the path."""
    code, _, err = run(capsys, "pretrain", "vanilla", work["wiki"], "--writing_params_path", tmp_path, *TINY, *TRAIN)
    assert code == 2 and err.startswith("factlab: error: ") and str(tmp_path) in err and err.count("\n") == 1


def test_evaluate_question_longer_than_block_size(tmp_path, work, capsys):
    """A question longer than the model's block size does not crash the command."""
    long_question = "Where was " + "Odrel Vasketh " * 10 + "born?"
    questions = bad_file(tmp_path, "long.tsv", f"{long_question}\tParis\n" + work["dev"].read_text())
    code, _, err = run(capsys, "evaluate", "vanilla", work["wiki"], "--reading_params_path", work["ft"],
                       "--eval_corpus_path", questions, "--device", "cpu")
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and f"{questions}:1:" in err and "reads at most" in err


def test_max_minutes_stops_cleanly_and_saves(tmp_path, work, capsys):
    """--max_minutes stops training early, says so, and still writes a loadable checkpoint and its metrics."""
    params = tmp_path / "stopped.params"
    code, out, _ = run(capsys, "pretrain", "vanilla", work["wiki"], "--writing_params_path", params, *TINY,
                       "--max_epochs", "50", "--batch_size", "8", "--max_minutes", "0")
    assert code == 0 and "stopped at --max_minutes" in out and out.startswith("pretrain: 1 steps")
    assert len(params.with_name("stopped.params.metrics.jsonl").read_text().splitlines()) == 1
    code, out, _ = run(capsys, "evaluate", "vanilla", work["wiki"], "--reading_params_path", params,
                       "--eval_corpus_path", work["dev"])
    assert code == 0 and SCORE.match(out.strip())


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_gpu_is_one_line(tmp_path, work, capsys):
    """--device cuda where torch sees no GPU: exit 2, one line, and the checkpoint asked for is not written."""
    params = tmp_path / "p.params"
    code, _, err = run(capsys, "pretrain", "vanilla", work["wiki"], "--writing_params_path", params,
                       *TINY[:-2], "--device", "cuda", *TRAIN)
    assert code == 2 and err.count("\n") == 1 and "no CUDA GPU" in err and not params.exists()


def test_tensorboard_scalars_beside_the_jsonl(tmp_path, work, capsys, monkeypatch):
    """--tb_expt_name writes the per-step loss, lr and tokens under expt/VERB/NAME_VARIANT, as the course's
    `tensorboard --logdir expt/` expects; without TensorBoard installed it is one line and nothing trains."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "pretrain", "vanilla", work["wiki"], "--writing_params_path", "p.params", *TINY,
                       *TRAIN, "--tb_expt_name", "first")
    assert code == 0, err
    events = EventAccumulator(str(tmp_path / "expt" / "pretrain" / "first_vanilla")).Reload()
    steps = [json.loads(line)["step"] for line in (tmp_path / "p.params.metrics.jsonl").read_text().splitlines()]
    assert {"train/loss", "train/lr", "train/tokens", "train/tokens_per_s"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == steps
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the extra were not installed
    code, out, err = run(capsys, "pretrain", "vanilla", work["wiki"], "--writing_params_path", "q.params", *TINY,
                         *TRAIN, "--tb_expt_name", "second")
    assert code == 2 and err.count("\n") == 1 and "TensorBoard is not installed" in err
    assert not (tmp_path / "q.params").exists()


def test_compare_scores_two_predictions_files_question_by_question(tmp_path, work, capsys):
    """compare counts the questions both, either or neither file answers right and gives the exact McNemar
    p-value of the disagreements; files of another length or questions without answers are one line."""
    gold = [line.split("\t")[1] for line in work["dev"].read_text().splitlines()]
    n = len(gold)
    a = gold[:6] + ["Nowhere"] * (n - 6)  # right on the first 6
    b = gold[:2] + ["Nowhere"] * 4 + gold[6:]  # right on the first 2 and on every one after the sixth
    (tmp_path / "a.predictions").write_text("".join(p + "\n" for p in a))
    (tmp_path / "b.predictions").write_text("".join(p + "\n" for p in b))
    code, out, err = run(capsys, "compare", "--eval_corpus_path", work["dev"], tmp_path / "a.predictions",
                         tmp_path / "b.predictions")
    lines = out.splitlines()
    assert code == 0 and err == "" and len(lines) == 4
    assert lines[0].startswith(f"A {tmp_path / 'a.predictions'}: 6/{n} = ")
    assert lines[2] == f"both right 2, only A 4, only B {n - 6}, neither 0"
    assert f"p = {mcnemar_exact(4, n - 6):.3g}," in lines[3]
    (tmp_path / "short.predictions").write_text("x\n")
    code, out, err = run(capsys, "compare", "--eval_corpus_path", work["dev"], tmp_path / "a.predictions",
                         tmp_path / "short.predictions")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"short.predictions: 1 predictions for {n} questions" in err
    inputs = tmp_path / "inputs.tsv"
    inputs.write_text("".join(f"Where was X{i} born?\n" for i in range(n)))
    code, _, err = run(capsys, "compare", "--eval_corpus_path", inputs, tmp_path / "a.predictions",
                       tmp_path / "b.predictions")
    assert code == 2 and err.count("\n") == 1 and "inputs.tsv" in err


@settings(max_examples=100, deadline=None)
@given(only_a=st.integers(0, 60), only_b=st.integers(0, 60))
def test_mcnemar_exact_is_the_binomial_tail_of_the_disagreements(only_a, only_b):
    """Symmetric, 1 for an even split, and twice the smaller binomial tail (by direct sum of the outcomes'
    probabilities) otherwise."""
    p = mcnemar_exact(only_a, only_b)
    assert p == mcnemar_exact(only_b, only_a) and 0 < p <= 1
    n = only_a + only_b
    tail = sum(math.comb(n, k) * 0.5 ** n for k in range(n + 1) if k <= min(only_a, only_b))
    assert p == pytest.approx(min(1.0, 2 * tail))
    assert (p == 1.0) >= (only_a == only_b)
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
