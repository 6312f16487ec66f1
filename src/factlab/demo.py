"""`factlab demo`: the whole experiment on a generated corpus of fictional biographies, in minutes on a CPU.

It runs the London baseline, finetuning without pretraining, and pretraining + finetuning, with a model small
enough for a laptop, and prints the results table. The synthetic people exist nowhere else, so whatever the
pretrained model answers correctly about dev people it learned from their biographies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import experiment, synthetic
from .checkpoint import write_text_atomic


@dataclass(frozen=True)
class DemoSize:
    n_people: int
    model: experiment.ModelOptions
    pretrain: dict
    finetune: dict


FULL = DemoSize(
    n_people=500,
    model=experiment.ModelOptions(block_size=128, n_layer=4, n_head=4, n_embd=128),
    pretrain=dict(max_epochs=60, batch_size=64, learning_rate=3e-3),
    finetune=dict(max_epochs=30, batch_size=64, learning_rate=6e-4),
)
QUICK = DemoSize(  # for the tests: the same pipeline, smaller and shorter
    n_people=200,
    model=experiment.ModelOptions(block_size=128, n_layer=2, n_head=2, n_embd=64),
    pretrain=dict(max_epochs=20, batch_size=64, learning_rate=3e-3),
    finetune=dict(max_epochs=10, batch_size=64, learning_rate=6e-4),
)


def run_demo(out_dir, seed: int = 0, device: str = "auto", quick: bool = False, log=print) -> list[dict]:
    size = QUICK if quick else FULL
    out = Path(out_dir)
    paths = synthetic.generate(seed=seed, n_people=size.n_people).write(out / "data")
    log(f"synthetic corpus: {size.n_people} fictional people in {paths['wiki']} (seed {seed})")
    rows = []

    def row(name: str, evaluation, seconds: float) -> None:
        s = evaluation.score
        rows.append({"run": name, "correct": s.correct, "total": s.total, "percent": s.percent, "seconds": seconds})
        log(f"{name}: {s} ({seconds:.0f} s)")

    started = time.perf_counter()
    row("London baseline", experiment.london(paths["dev"], out / "london.dev.predictions"), 0.0)

    t = time.perf_counter()
    experiment.finetune("vanilla", paths["wiki"], paths["train"], out / "vanilla.nopretrain.params", size.model,
                        seed=seed, device=device, **size.finetune)
    evaluation = experiment.evaluate("vanilla", paths["wiki"], out / "vanilla.nopretrain.params", paths["dev"],
                                     size.model, out / "vanilla.nopretrain.dev.predictions", device=device)
    row("no pretraining", evaluation, time.perf_counter() - t)

    t = time.perf_counter()
    experiment.pretrain("vanilla", paths["wiki"], out / "vanilla.pretrain.params", size.model, seed=seed,
                        device=device, **size.pretrain)
    experiment.finetune("vanilla", paths["wiki"], paths["train"], out / "vanilla.finetune.params", size.model,
                        reading_params_path=out / "vanilla.pretrain.params", seed=seed, device=device, **size.finetune)
    evaluation = experiment.evaluate("vanilla", paths["wiki"], out / "vanilla.finetune.params", paths["dev"],
                                     size.model, out / "vanilla.pretrain.dev.predictions", device=device)
    row("pretrain + finetune", evaluation, time.perf_counter() - t)

    table = ["| run | dev exact match | time |", "| --- | --- | --- |"]
    table += [f"| {r['run']} | {r['correct']}/{r['total']} = {r['percent']:.1f}% | {r['seconds']:.0f} s |" for r in rows]
    text = "\n".join(table)
    write_text_atomic(out / "results.md", text + "\n")
    log("\n" + text + f"\n\ntotal {time.perf_counter() - started:.0f} s; outputs in {out}/")
    return rows
