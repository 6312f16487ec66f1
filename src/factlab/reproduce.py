"""`factlab reproduce`: the whole experiment from one command, under a named recipe.

For every variant asked for it trains without pretraining and with pretraining + finetuning, answers the dev
questions (and the test inputs when there are any), and adds the London baseline. It writes every checkpoint and
predictions file, and a results table as Markdown and JSON, with the wall-clock time of each run.

A recipe (recipes.py) names the model sizes and the three trainings' settings; `--precision` overrides every
stage's.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from . import FactlabError, checkpoint, distill, experiment, state
from .io import atomic_path, read_json, write_text_atomic
from .model import VARIANTS
from .data import VALIDATION_SEED
from .recipes import COURSE, RECIPE_STAGES, Recipe, Training, course_stage, recipe
from .statistics import wilson_interval
from .train import TrainResult, highest_memory, peak_memory, resolve_device


@dataclass(frozen=True)
class DataFiles:
    wiki: Path
    train: Path
    dev: Path
    test: Path | None = None  # test inputs (questions without answers), optional

    @classmethod
    def in_dir(cls, data_dir) -> DataFiles:
        """The course's file names in one directory (the layout of ../shared/data/birthplaces)."""
        d = Path(data_dir)
        files = cls(d / "wiki.txt", d / "birth_places_train.tsv", d / "birth_dev.tsv", d / "birth_test_inputs.tsv")
        for path in (files.wiki, files.train, files.dev):
            if not path.is_file():
                raise FactlabError(f"{path}: not found (a data directory holds wiki.txt, birth_places_train.tsv, "
                                   f"birth_dev.tsv and optionally birth_test_inputs.tsv)")
        return files if files.test.is_file() else cls(files.wiki, files.train, files.dev)


def reproduce(files: DataFiles, out_dir, recipe_name: str | Recipe = "cpu-fast", variants=("vanilla",),
              seed: int = 0, device: str = "auto", log=print, resume: bool = False,
              precision: str | None = None, validation: int | None = None, analyze: bool = False,
              calibrate: int | None = None, scratch: bool = True, micro_batch: int | None = None,
              pretrained_from=None) -> list[dict]:
    """With `resume`, a stage whose checkpoint is there without a training state is finished and is not trained
    again (its times and steps come from the checkpoint), and a stage with a training state continues from it:
    a reproduction of hours, stopped or killed, goes on where it was. `precision` and `micro_batch` (how a
    step is computed, not what it computes: train.TrainConfig) override every stage's.

    With `validation` N, the run is one for choosing settings: it finetunes on the training questions less N held
    out (experiment.split, into OUT_DIR) and scores those N in place of dev; dev and the test inputs are not
    read.

    With `analyze`, every pretrained model's answers are analysed too (analysis.py: confidence, risk–coverage,
    calibration, and the pretrained model's recall of each fact), and the row carries the analysis's key numbers.
    `calibrate` N (a final run's) also finetunes the pretrained model on the training questions less N held out
    (the validation split for N = 400), analyses its answers to the N and calibrates the final model's
    confidences on them.
    Without `scratch` the finetuning without pretraining is left out.

    With `pretrained_from` (another reproduction's folder), each variant starts from that run's finished pretrained
    model instead of pretraining again, when both pretrain alike (shared_pretraining): a recipe that changes only
    the finetuning or the answer format costs minutes, not an hour. The copy's times are that run's, and
    results.json names the folder it came from."""
    chosen = recipe_name if isinstance(recipe_name, Recipe) else recipe(recipe_name)
    if calibrate is not None and validation is not None:
        raise FactlabError("--calibrate is for a final run: a run with --validation has no held-out questions left "
                           "to calibrate on")
    scored_on, split = "dev", None
    if validation is not None:
        split = {"questions": validation, "seed": VALIDATION_SEED, "of": files.train.name}
        train, held_out = experiment.split(files.train, out_dir, validation)
        files, scored_on = DataFiles(files.wiki, train, held_out), "validation"
    every_stage = Training(precision=precision, micro_batch=micro_batch)
    if every_stage != Training():  # on every stage, and so recorded in results.json with the recipe
        chosen = replace(chosen, **{s: chosen.stage(s).overridden_by(every_stage) for s in RECIPE_STAGES})
    for v in variants:
        if v not in VARIANTS:
            raise FactlabError(f"--variants: unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    resolve_device(device)  # fail now, not after the first hours of training
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for variant in variants if pretrained_from is not None else ():  # before any training: it may be refused
        shared_pretraining(Path(pretrained_from), out / f"{variant}.pretrain.params",
                           pretraining_identity(chosen, seed, split), log)
    started = time.perf_counter()
    rows: list[dict] = []
    shared_from = None
    peaks: list[dict | None] = []  # of the stages' trainings, resumed ones over all their sittings
    earlier: list[float] = []  # seconds of the next row's training spent in earlier sittings (resumed, finished)

    def evaluate(name, variant, params, stage_seconds, t0, analysed=None):
        """Answer the scored questions and the test inputs; analysed = (pretrained checkpoint, calibration file)
        asks for the answers' analysis too."""
        evaluation = experiment.evaluate(variant, files.wiki, out / params, files.dev, chosen.model,
                                         out / f"{name}.{scored_on}.predictions", device=device,
                                         with_scores=analysed is not None)
        if files.test is not None:
            experiment.evaluate(variant, files.wiki, out / params, files.test, chosen.model,
                                out / f"{name}.test.predictions", device=device)
        rows.append(row(f"{variant}: {RUN_NAMES[name.split('.')[1]]}", variant, evaluation,
                        time.perf_counter() - t0 + sum(earlier), params, f"{name}.{scored_on}.predictions",
                        stage_seconds, log))
        rows[-1]["model"] = checkpoint.read_config(out / params)[0].to_dict()  # the sizes and variant options it ran
        earlier.clear()
        if analysed is not None:
            t1 = time.perf_counter()
            rows[-1]["analysis"] = analysis_of(variant, out / params, files.dev,
                                               out / f"{name}.{scored_on}.analysis.json", *analysed,
                                               answered=(evaluation.scored, evaluation.recitations))
            stage_seconds["analysis"] = round(time.perf_counter() - t1, 1)
        write_results(out, rows, files, chosen, seed, scored_on, split,  # after each run: hours of work stay on record
                      shared_from, highest_memory(peak_memory(), *peaks))

    def analysis_of(variant, params, questions, output, pretrained, calibrate_on=None, answered=None) -> dict:
        from .analysis import run_analysis, summary_numbers

        result = run_analysis(variant, files.wiki, params, questions, chosen.model, files.train, output,
                              device=device, recall_params_path=pretrained, calibrate_on=calibrate_on,
                              answered=answered)
        return {"file": output.name, **summary_numbers(result)}

    def trained(run, params: Path, stage: str, finished=False, **options):
        """Train one stage (run: experiment.pretrain or finetune), or take a finished one as it is (with
        `resume`, or when `finished`: copied from another run)."""
        model, training = chosen.resolved(stage)
        state_file = state.state_path(params)
        if (resume or finished) and params.is_file() and not state_file.exists():
            info = checkpoint.read_config(params)[2]
            if "result" in info:
                log(f"{params}: finished earlier ({info['result']['steps']} steps); not trained again")
                result = TrainResult(**info["result"])
                if not finished:  # a copy's time and memory are its own run's
                    peaks.append(result.memory)
                    earlier.append(result.seconds)
                return result
        control = experiment.RunControl(resume=resume and state_file.exists())
        result = run(writing_params_path=params, options=model, training=training, control=control, **options)
        peaks.append(result.memory)
        earlier.append(result.seconds_before)
        return result

    def finetuned(variant, questions: Path, name: str, pretrained: Path, seconds: dict) -> TrainResult:
        """Finetune the pretrained model on `questions` in the recipe's answer format, as OUT/NAME.params. A
        distilling recipe first finetunes its teacher (NAME.teacher.params), which labels every other person of
        the corpus (NAME.labelled.tsv: the questions, then the teacher's answers); the finetuning reads that file.
        The teacher's and the labelling's seconds, and how many people it labelled, go in `seconds`."""
        if chosen.teacher_format is not None:
            t0 = time.perf_counter()
            teacher = trained(partial(experiment.finetune, variant, files.wiki, questions),
                              out / f"{name}.teacher.params", "teacher", reading_params_path=pretrained, seed=seed,
                              device=device, answer_format=chosen.teacher_format)
            labelled = out / f"{name}.labelled.tsv"
            if not (resume and labelled.is_file()):
                log(f"{labelled.name}: " + str(distill.label_corpus(out / f"{name}.teacher.params", variant,
                                                                    files.wiki, questions, labelled, chosen.model,
                                                                    device)))
            added = len(experiment.read_questions(labelled)) - len(experiment.read_questions(questions))
            seconds.update(teacher=teacher.seconds, teaching=round(time.perf_counter() - t0, 1), labelled=added)
            questions = labelled
        return trained(partial(experiment.finetune, variant, files.wiki, questions), out / f"{name}.params",
                       "finetune", reading_params_path=pretrained, seed=seed, device=device,
                       answer_format=chosen.answer_format)

    london = experiment.london(files.dev, out / f"london.{scored_on}.predictions")
    rows.append(row("London baseline", "baseline", london, 0.0, None, f"london.{scored_on}.predictions", {}, log))
    for variant in variants:
        if scratch:
            t0 = time.perf_counter()
            result = trained(partial(experiment.finetune, variant, files.wiki, files.train),
                             out / f"{variant}.nopretrain.params", "scratch", seed=seed, device=device)
            evaluate(f"{variant}.nopretrain", variant, f"{variant}.nopretrain.params",
                     {"finetune": result.seconds, "finetune_steps": result.steps,
                      "finetune_tokens_per_s": throughput(result)}, t0)
        t0 = time.perf_counter()
        pretrained = out / f"{variant}.pretrain.params"
        shared_from = pretrained_origin(pretrained)
        pre = trained(partial(experiment.pretrain, variant, files.wiki), pretrained, "pretrain", seed=seed,
                      device=device, questions_path=files.train, finished=shared_from is not None)
        seconds = {"pretrain": pre.seconds, "pretrain_steps": pre.steps, "pretrain_epochs": pre.epochs_done,
                   "pretrain_tokens_per_s": throughput(pre)}
        calibration = None
        if calibrate is not None:  # the same finetuning without the held-out questions, and its answers to them
            t1 = time.perf_counter()
            rest, held_out = experiment.split(files.train, out / "calibration", calibrate)
            finetuned(variant, rest, f"{variant}.calibration", pretrained, {})
            calibration = out / f"{variant}.calibration.analysis.json"
            analysis_of(variant, out / f"{variant}.calibration.params", held_out, calibration, pretrained)
            calibration = fittable(calibration, log)
            seconds["calibration"] = round(time.perf_counter() - t1, 1)
        fine = finetuned(variant, files.train, f"{variant}.finetune", pretrained, seconds)
        evaluate(f"{variant}.pretrain", variant, f"{variant}.finetune.params",
                 {**seconds, "finetune": fine.seconds, "finetune_steps": fine.steps,
                  "finetune_tokens_per_s": throughput(fine)}, t0,
                 (pretrained, calibration) if analyze or calibrate is not None else None)
    log(f"\n{results_markdown(rows, scored_on)}\n\ntotal {time.perf_counter() - started:.0f} s; outputs in {out}/")
    return rows


def pretraining_identity(chosen: Recipe, seed: int, split: dict | None) -> dict:
    """What decides a reproduction's pretrained model, in results.json's terms: the model, the pretraining as
    trained, the seed, and, when questions are mixed in, which training questions (the validation split's
    remainder or all of them)."""
    stage = asdict(COURSE["pretrain"].overridden_by(chosen.stage("pretrain")))
    return {"model": asdict(chosen.model), "pretrain": stage, "seed": seed,
            **({"validation_split": split} if stage["question_share"] else {})}


def flat_settings(identity: dict) -> dict:
    """{"pretrain": {"learning_rate": 4e-3}, "seed": 0} as {"pretrain.learning_rate": 4e-3, "seed": 0}: a
    difference is named by its setting."""
    flat = {}
    for key, value in identity.items():
        flat.update({f"{key}.{name}": v for name, v in value.items()} if isinstance(value, dict) else {key: value})
    return flat


def shared_pretraining(source: Path, target: Path, wanted: dict, log) -> None:
    """Copy the finished pretrained model `target.name` of the reproduction in `source` (with its training curve)
    to `target`, when that run's pretraining is `wanted` (pretraining_identity); one line naming the first
    difference otherwise. TARGET.from names the source folder (what results.json records); a target copied before
    from the same folder (a resumed run) is kept."""
    results_file, params, origin = source / "results.json", source / target.name, Path(f"{target}.from")
    if not results_file.is_file():
        raise FactlabError(f"--pretrained_from {source}: no results.json there (a finished `factlab reproduce` "
                           "folder)")
    results = read_json(results_file)
    recorded = {"model": results["recipe"]["model"], "pretrain": results["stages"]["pretrain"],
                "seed": results["seed"], "validation_split": results.get("validation_split")}
    mine, theirs = flat_settings(wanted), flat_settings({key: recorded[key] for key in wanted})
    for setting in sorted(set(mine) | set(theirs)):
        if mine.get(setting) != theirs.get(setting):
            raise FactlabError(f"--pretrained_from {source}: its pretraining differs from this run's ({setting} "
                               f"{theirs.get(setting)!r} there, {mine.get(setting)!r} here)")
    if not params.is_file() or state.state_path(params).exists() or "result" not in checkpoint.read_config(params)[2]:
        raise FactlabError(f"--pretrained_from {source}: no finished {params.name} there")
    if target.is_file() or state.state_path(target).exists():
        copied_from = pretrained_origin(target)
        if copied_from != source.resolve().name:
            whose = "this run's own pretraining" if copied_from is None else f"copied from {copied_from}"
            raise FactlabError(f"--pretrained_from {source}: {target} is {whose} (remove it to start from "
                               f"{source.name}'s)")
        return
    write_text_atomic(origin, source.resolve().name + "\n")
    for suffix in (".metrics.jsonl", ""):  # the checkpoint last: once it is there, the stage is done
        if Path(f"{params}{suffix}").is_file():
            with atomic_path(f"{target}{suffix}") as tmp:
                shutil.copyfile(f"{params}{suffix}", tmp)
    log(f"{target.name}: the pretrained model of {source}")


def pretrained_origin(params: Path) -> str | None:
    """The run folder a pretrained model was copied from (shared_pretraining), None for one trained here."""
    origin = Path(f"{params}.from")
    return origin.read_text().strip() if origin.is_file() else None


def throughput(result: TrainResult) -> float:
    """Non-PAD input tokens per second of training; for a resumed stage, over all its sessions (their training
    time, not the time between them)."""
    return round(result.tokens / max(result.seconds, 1e-9), 1)


def fittable(calibration: Path, log) -> Path | None:
    """The calibration file, or None (said in the log) when no calibration can be fitted on it: a model that
    answers every validation question right, or none."""
    from .analysis import Calibration

    try:
        Calibration.fitted_on(calibration)
    except FactlabError as err:
        log(f"no calibration: {err}")
        return None
    return calibration


RUN_NAMES = {"nopretrain": "no pretraining", "pretrain": "pretrain + finetune"}


def row(label, variant, evaluation, seconds, params, predictions, stage_seconds, log) -> dict:
    s = evaluation.score
    log(f"{label}: {s} ({seconds:.0f} s)")
    return {"run": label, "variant": variant, "correct": s.correct, "total": s.total, "percent": round(s.percent, 2),
            "seconds": round(seconds, 3), "stage_seconds": stage_seconds, "params": params, "predictions": predictions}


def results_markdown(rows: list[dict], scored_on: str = "dev") -> str:
    """The results table; with analyses, also the facts the pretrained model recalls, the accuracy among the
    most confident half of the answers and the ECE (after calibration, when there is one)."""
    analysed = any("analysis" in r for r in rows)
    extra = " recalled by the pretrained model | accuracy at 50% coverage | ECE |" if analysed else ""
    table = [f"| run | {scored_on} exact match (95% interval) | wall-clock | training tokens/s |{extra}",
             "| --- | --- | --- | --- |" + " --- |" * (3 * analysed)]
    for r in rows:
        low, high = wilson_interval(r["correct"], r["total"])
        speeds = ", ".join(f"{stage.removesuffix('_tokens_per_s')} {speed:,.0f}"
                           for stage, speed in (r.get("stage_seconds") or {}).items()
                           if stage.endswith("_tokens_per_s"))
        line = (f"| {r['run']} | {r['correct']}/{r['total']} = {r['percent']:.1f}% ({100 * low:.1f}–{100 * high:.1f}%) "
                f"| {r['seconds']:,.0f} s | {speeds or '–'} |")
        if analysed:
            a = r.get("analysis") or {}
            recall = a.get("recall")
            line += (f" {recall['recalled']}/{recall['probed']} |" if recall else " – |")
            line += (f" {100 * a['accuracy_at_50']:.1f}% |" if a else " – |")
            line += (f" {a['ece']:.3f}" + (f" ({a['ece_calibrated']:.3f} calibrated)" if "ece_calibrated" in a else "")
                     + " |" if a else " – |")
        table.append(line)
    return "\n".join(table)


def write_results(out: Path, rows: list[dict], files: DataFiles, chosen: Recipe, seed: int, scored_on: str,
                  split: dict | None, pretraining_from: str | None, memory: dict) -> None:
    """results.json and results.md; `memory`: the peak memory of the processes that trained and evaluated the
    runs."""
    def where(path: Path) -> str:
        """Relative to the run directory when inside it (the demo's corpus), else the name within the data
        folder: never an absolute path, so results committed from one machine read on another."""
        path = path.resolve()
        return path.relative_to(out.resolve()).as_posix() if path.is_relative_to(out.resolve()) else path.name

    # the recipe as named, and each stage's settings as trained: the course's with the recipe's on top
    trained_with = {stage: asdict(course_stage(stage).overridden_by(chosen.stage(stage)))
                    for stage in RECIPE_STAGES if stage != "teacher" or chosen.teacher_format is not None}
    meta = {"recipe": asdict(chosen), "stages": trained_with, "seed": seed, "scored_on": scored_on,
            "validation_split": split, "corpus_path": where(files.wiki), "eval_corpus_path": where(files.dev),
            "hardware": hardware(), "memory": memory,
            "data_files": {k: (None if v is None else Path(v).name) for k, v in asdict(files).items()},
            **({"pretraining_from": pretraining_from} if pretraining_from else {})}
    write_text_atomic(out / "results.json", json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    write_text_atomic(out / "results.md", results_markdown(rows, scored_on) + "\n")


def hardware() -> dict:
    """What the run ran on: the CPU, the vector instructions torch's kernels use on it (AVX2 or AVX512: the
    machines here have either, and it changes how much a time-limited recipe trains), its cores and threads, the
    GPU if any, and torch's version."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "python": platform.python_version()}
