"""Runs that survive: the training state, --resume, clean stops on SIGINT/SIGTERM, and a run killed with SIGKILL
at any moment that, resumed, ends with exactly the parameters of an uninterrupted run (fp32, CPU, one thread)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import BLOCK, TINY, make_model, tiny_config
from factlab import FactlabError, checkpoint, state
from factlab.cli import main
from factlab.train import Checkpointing, TrainConfig, train

# The tiny model of the other tests, with dropout, so that resuming must restore torch's generator as well.
MODEL = ["--block_size", str(BLOCK), "--n_layer", str(TINY["n_layer"]), "--n_head", str(TINY["n_head"]),
         "--n_embd", str(TINY["n_embd"]), "--dropout", "0.1"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(stage: str, files: dict, params: Path, pretrained: Path | None = None) -> list[str]:
    common = ["vanilla", str(files["wiki"]), "--writing_params_path", str(params), *MODEL, "--seed", "3",
              "--device", "cpu", "--save_every_minutes", "0.0005"]  # a state every ~30 ms: kills land anywhere
    if stage == "pretrain":
        return ["pretrain", *common, "--max_epochs", "12", "--batch_size", "16", "--learning_rate", "3e-3",
                "--final_tokens", "40000"]
    return ["finetune", *common, "--finetune_corpus_path", str(files["train"]), "--max_epochs", "12",
            "--batch_size", "8", "--learning_rate", "1e-3", *(["--reading_params_path", str(pretrained)]
                                                              if pretrained else [])]


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "factlab.cli", *args], env=ONE_THREAD, capture_output=True,
                          text=True, timeout=300)


def steps_logged(params: Path) -> int:
    partial = state.partial_metrics_path(f"{params}.metrics.jsonl")
    try:
        return len(partial.read_text().splitlines())
    except FileNotFoundError:
        return 0


def start_and_stop(args: list[str], params: Path, how: signal.Signals, after_steps: int) -> tuple[int, str]:
    """Start a run, send it `how` once it has logged `after_steps` steps and saved a state, and wait for it:
    its exit status and what it printed on stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "factlab.cli", *args], env=ONE_THREAD,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while (steps_logged(params) < after_steps or not state.state_path(params).exists()) and proc.poll() is None:
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before it could be stopped: {proc.communicate()}"
    proc.send_signal(how)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus):
    """Uninterrupted runs: a pretraining, and a finetuning of it."""
    root = tmp_path_factory.mktemp("reference")
    files = corpus.write(root / "data")
    pre, fine = root / "pre.params", root / "fine.params"
    for args in (command("pretrain", files, pre), command("finetune", files, fine, pre)):
        done = run_cli(args)
        assert done.returncode == 0, done.stderr
    assert not state.state_path(pre).exists()  # a finished run keeps no training state
    return files, pre, fine


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def metric_lines(params: Path) -> list[dict]:
    return [json.loads(line) for line in Path(f"{params}.metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stage,how", [("pretrain", signal.SIGKILL), ("finetune", signal.SIGKILL),
                                       ("pretrain", signal.SIGINT), ("finetune", signal.SIGTERM)])
def test_stopped_run_resumes_to_the_uninterrupted_parameters(reference, tmp_path, stage, how):
    """Stopped mid-run (SIGKILL anywhere; SIGINT/SIGTERM after the current step, saving the checkpoint and the
    state and saying how to resume, exit 130/143), then resumed with --resume: the same parameters as the
    uninterrupted run, bit for bit, and one metrics file with every step once, equal to the reference's."""
    files, pre, fine = reference
    expected = pre if stage == "pretrain" else fine
    params = tmp_path / "runs" / "new" / f"{stage}.params"  # folders that do not exist yet
    args = command(stage, files, params, pre)
    if how == signal.SIGKILL:
        # An older run's checkpoint and curve stand there: a killed rerun must leave them as they were.
        params.parent.mkdir(parents=True)
        params.write_bytes(b"an older checkpoint")
        Path(f"{params}.metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')
    status, err = start_and_stop(args, params, how, after_steps=7)
    if how == signal.SIGKILL:
        assert status == -signal.SIGKILL
        assert params.read_bytes() == b"an older checkpoint"
        assert Path(f"{params}.metrics.jsonl").read_text() == '{"step": 1, "loss": 9.0}\n'
    else:
        assert status == 128 + how, err
        assert f"stopped by {how.name} after step" in err and "--resume" in err and str(params) in err
        assert err.strip().count("\n") == 0, err
        assert state.state_path(params).exists() and params.exists()
    stopped_at = state.load(state.state_path(params))["steps"]
    assert 0 < stopped_at < len(metric_lines(expected))
    done = run_cli([*args, "--resume"])
    assert done.returncode == 0, done.stderr
    assert f"resumed from step {stopped_at}" in done.stdout
    assert_same_weights(params, expected)
    assert not state.state_path(params).exists()
    assert not state.partial_metrics_path(f"{params}.metrics.jsonl").exists()
    ours, theirs = metric_lines(params), metric_lines(expected)
    assert [m["step"] for m in ours] == list(range(1, len(theirs) + 1))
    assert [(m["loss"], m["lr"], m["tokens"]) for m in ours] == [(m["loss"], m["lr"], m["tokens"]) for m in theirs]


def test_resume_in_process_across_epochs(pretrain_ds, vocab, tmp_path):
    """In one process: a run stopped by max_steps inside an epoch and resumed with the full options ends where an
    uninterrupted run ends (span corruption, dropout, several epochs, a partial last batch)."""
    def config(**extra):
        return TrainConfig(max_epochs=3, batch_size=16, learning_rate=2e-3, warmup_tokens=1000,
                           final_tokens=2 * len(pretrain_ds) * (BLOCK - 1), seed=5, **extra)

    whole = make_model(tiny_config(len(vocab), dropout=0.1), seed=1)
    train(whole, pretrain_ds, config(), progress=False)
    identity = {"run": "test"}
    part = make_model(tiny_config(len(vocab), dropout=0.1), seed=1)
    steps = len(pretrain_ds) // 16 + 2  # into the second epoch
    saving = Checkpointing(tmp_path / "p.state", 10.0, False, identity)
    first = train(part, pretrain_ds, config(max_steps=steps), progress=False, checkpointing=saving)
    assert first.steps == steps and first.stopped_early
    torch.manual_seed(123)  # whatever happened to torch's generator since, the state restores it
    resumed = make_model(tiny_config(len(vocab), dropout=0.1), seed=7)
    second = train(resumed, pretrain_ds, config(), progress=False,
                   checkpointing=Checkpointing(tmp_path / "p.state", 10.0, True, identity))
    assert second.resumed_from_step == steps
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_resumed_run_reports_the_peak_memory_of_all_its_sessions(pretrain_ds, vocab, tmp_path):
    """The state carries the peak memory of the sessions so far: a resumed run reports the highest, not only its
    own process's (an earlier session may have been the larger one, e.g. on another machine)."""
    config = TrainConfig(max_epochs=1, batch_size=16, learning_rate=1e-3, final_tokens=10**6, seed=2)
    saving = Checkpointing(tmp_path / "p.state", 10.0, False, {"run": "test"})
    first = train(make_model(tiny_config(len(vocab))), pretrain_ds, replace(config, max_steps=2), progress=False,
                  checkpointing=saving)
    assert first.memory["peak_rss_mb"] > 100  # python and torch alone take more
    saved = state.load(tmp_path / "p.state")
    assert 100 < saved["memory"]["peak_rss_mb"] <= first.memory["peak_rss_mb"]  # saved before the result
    earlier = 10 * first.memory["peak_rss_mb"]  # as if the first session had been ten times larger
    state.save(tmp_path / "p.state", {**saved, "memory": {"peak_rss_mb": earlier}})
    second = train(make_model(tiny_config(len(vocab))), pretrain_ds, config, progress=False,
                   checkpointing=replace(saving, resume=True))
    assert second.resumed_from_step == 2 and second.memory["peak_rss_mb"] == earlier


def test_resume_refuses_other_options_in_one_line(reference, tmp_path, capsys):
    """A run resumed with other options, or from another starting checkpoint, is refused naming what differs."""
    files, pre, fine = reference
    params = tmp_path / "f.params"
    args = command("finetune", files, params, pre)
    status, err = start_and_stop(args, params, signal.SIGINT, after_steps=3)
    assert status == 130, err
    changed = [a if a != "1e-3" else "2e-3" for a in args]
    assert main([*changed, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "differs from the saved one in train.learning_rate 0.001 (now 0.002)" in err
    other_start = [a if a != str(pre) else str(fine) for a in args]
    assert main([*other_start, "--resume"]) == 2
    assert "data.start" in capsys.readouterr().err
    assert main([*args, "--batching", "length", "--resume"]) == 2  # other batches: another run
    assert "train.batching 'course' (now 'length')" in capsys.readouterr().err
    # In how many passes a batch is computed is not what it computes: that resumes.
    assert main([*args, "--micro_batch", "3", "--resume"]) == 0
    assert not state.state_path(params).exists() and params.is_file()


def test_periodic_state_is_written_atomically_with_ordinary_permissions(pretrain_ds, vocab, tmp_path):
    """Under umask 022 a training state and a checkpoint are 0644, not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        model = make_model(tiny_config(len(vocab)))
        train(model, pretrain_ds, TrainConfig(max_epochs=1, batch_size=32, learning_rate=1e-3, final_tokens=10**6,
                                              max_steps=2),
              progress=False, checkpointing=Checkpointing(tmp_path / "m.state", 10.0, False, {}))
        checkpoint.save(tmp_path / "m.params", model, vocab)
        os.umask(0o002)
        checkpoint.save(tmp_path / "g.params", model, vocab)
    finally:
        os.umask(old)
    assert (tmp_path / "m.state").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.params").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "g.params").stat().st_mode & 0o777 == 0o664


def test_truncated_or_missing_state_is_one_line(tmp_path):
    path = tmp_path / "x.params.state"
    with pytest.raises(FactlabError, match="no training state to resume"):
        state.load(path)
    torch.save({"version": 1, "identity": {}, "model": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(FactlabError, match="truncated or corrupt training state"):
        state.load(path)
    path.write_bytes(b"")
    with pytest.raises(FactlabError, match="truncated or corrupt training state"):
        state.load(path)


def test_replay_rates_repeats_a_time_limited_run_exactly(finetune_ds, vocab, tmp_path, step_clock):
    """A run stopped by the clock, whose rate followed the clock ("floor" under max_minutes), is replayed bit for
    bit from its metrics file: same seed, no time limit, the recorded rates and as many steps."""
    options = dict(max_epochs=10**6, batch_size=8, learning_rate=1e-3, final_tokens=10**12, warmup_tokens=0,
                   lr_schedule="floor", seed=2)
    timed = make_model(tiny_config(len(vocab), dropout=0.1), seed=1)
    first = train(timed, finetune_ds, TrainConfig(**options, max_minutes=0.6 / 60),
                  metrics_path=tmp_path / "timed.metrics.jsonl", progress=False)
    assert first.stopped_early and first.steps > 5
    replay = make_model(tiny_config(len(vocab), dropout=0.1), seed=1)
    second = train(replay, finetune_ds, TrainConfig(**options, replay_rates=str(tmp_path / "timed.metrics.jsonl")),
                   progress=False)
    assert second.steps == first.steps
    for name, value in timed.state_dict().items():
        assert torch.equal(value, replay.state_dict()[name]), name
    (tmp_path / "bad.jsonl").write_text('{"step": 1, "lr": 0.1}\n{"step": 3, "lr": 0.1}\n')
    with pytest.raises(FactlabError, match=r"bad.jsonl:2: step 3 where step 2 was expected"):
        train(replay, finetune_ds, TrainConfig(**options, replay_rates=str(tmp_path / "bad.jsonl")), progress=False)


def test_snapshot_of_a_run_in_progress_is_its_model_and_leaves_the_run_as_it_was(reference, tmp_path, capsys):
    """`factlab snapshot` writes the model of a training state as a checkpoint (the weights a stop at that step
    saved) that analyze reads, the recall probe and the exposures included; the state stays as it was and the
    run resumes to the uninterrupted parameters. A missing state or another corpus is one line."""
    files, pre, _ = reference
    params = tmp_path / "pre.params"
    args = command("pretrain", files, params)
    status, err = start_and_stop(args, params, signal.SIGINT, after_steps=5)
    assert status == 130, err
    state_file = state.state_path(params)
    saved_bytes = state_file.read_bytes()
    steps = state.load(state_file)["steps"]

    snap = tmp_path / "snap" / "snap.params"
    assert main(["snapshot", str(state_file), str(files["wiki"]), "--writing_params_path", str(snap)]) == 0
    assert f"the pretrain model at step {steps} (epoch" in capsys.readouterr().out
    assert_same_weights(snap, params)  # a stop by a signal saves the checkpoint at the state's step
    _, _, info = checkpoint.read_config(snap)
    assert info["stage"] == "pretrain" and info["snapshot"]["step"] == info["result"]["steps"] == steps
    assert info["snapshot"]["state"] == state_file.name and info["train"]["max_epochs"] == 12
    assert info["pretraining"] == checkpoint.read_config(params)[2]["pretraining"] == {"objective": "span"}

    analysis = tmp_path / "snap.analysis.json"
    assert main(["analyze", "vanilla", str(files["wiki"]), "--reading_params_path", str(snap), "--eval_corpus_path",
                 str(files["dev"]), "--recall_params_path", str(snap), "--outputs_path", str(analysis)]) == 0
    records = json.loads(analysis.read_text(encoding="utf-8"))["records"]
    assert any(r["recall_probed"] for r in records)
    capsys.readouterr()

    assert main(["snapshot", str(tmp_path / "none.state"), str(files["wiki"]), "--writing_params_path",
                 str(tmp_path / "x.params")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "none.state: no such training state" in err
    assert main(["snapshot", str(state_file), str(files["train"]), "--writing_params_path",
                 str(tmp_path / "x.params")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not the corpus the run of" in err
    assert not (tmp_path / "x.params").exists()

    assert state_file.read_bytes() == saved_bytes
    done = run_cli([*args, "--resume"])
    assert done.returncode == 0, done.stderr
    assert_same_weights(params, pre)


@pytest.mark.parametrize("variant", ["synthesizer", "perceiver"])
def test_a_state_saved_before_synthesizer_b_existed_resumes(pretrain_ds, vocab, tmp_path, variant):
    """A training state whose model identity has no synthesizer_b (factlab before it existed): a synthesizer's was
    one B_i per head, so it resumes as per-head and is refused in one line as the shared B; every other variant
    resumes as before."""
    config = TrainConfig(max_epochs=1, batch_size=16, learning_rate=1e-3, final_tokens=10**6, seed=2)
    old = tiny_config(len(vocab), variant, synthesizer_b="per-head")
    identity = {"model": {k: v for k, v in old.to_dict().items() if k != "synthesizer_b"}}
    saving = Checkpointing(tmp_path / "p.state", 10.0, False, identity)
    train(make_model(old), pretrain_ds, replace(config, max_steps=2), progress=False, checkpointing=saving)
    now = tiny_config(len(vocab), variant)  # the shared B, today's default
    resuming = Checkpointing(tmp_path / "p.state", 10.0, True, {"model": now.to_dict()})
    if variant == "synthesizer":
        with pytest.raises(FactlabError) as err:
            train(make_model(now), pretrain_ds, config, progress=False, checkpointing=resuming)
        assert "\n" not in str(err.value) and "model.synthesizer_b 'per-head' (now 'shared')" in str(err.value)
        resuming = replace(resuming, identity={"model": old.to_dict()})
        now = old
    assert train(make_model(now), pretrain_ds, config, progress=False,
                 checkpointing=resuming).resumed_from_step == 2
