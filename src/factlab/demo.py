"""`factlab demo`: the whole experiment on a generated corpus of fictional biographies, in minutes on a CPU.

It runs the London baseline, finetuning without pretraining, and pretraining + finetuning, with a model small
enough for a laptop, and prints the results table. The synthetic people exist nowhere else, so whatever the
pretrained model answers correctly about dev people it learned from their biographies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import synthetic
from .recipes import DEMO, DEMO_QUICK, Recipe
from .reproduce import DataFiles, reproduce


@dataclass(frozen=True)
class DemoSize:
    n_people: int
    bios_per_person: int
    dev_fraction: float
    recipe: Recipe


FULL = DemoSize(
    n_people=300,
    bios_per_person=1,
    dev_fraction=0.3,  # 90 dev questions: with 60, one place's share of the dev split swings the baselines
    recipe=DEMO,
)
QUICK = DemoSize(  # for the tests: the same pipeline, smaller and shorter
    n_people=100,
    bios_per_person=2,
    dev_fraction=0.2,
    recipe=DEMO_QUICK,
)


def run_demo(out_dir, seed: int = 0, device: str = "auto", quick: bool = False, log=print) -> list[dict]:
    size = QUICK if quick else FULL
    out = Path(out_dir)
    paths = synthetic.generate(seed=seed, n_people=size.n_people, bios_per_person=size.bios_per_person,
                               dev_fraction=size.dev_fraction, test_fraction=0.05).write(out / "data")
    bios = "1 biography" if size.bios_per_person == 1 else f"{size.bios_per_person} biographies"
    log(f"synthetic corpus: {size.n_people} fictional people ({bios} per person) in {paths['wiki']} (seed {seed})")
    files = DataFiles(paths["wiki"], paths["train"], paths["dev"], paths["test"])
    return reproduce(files, out, size.recipe, variants=("vanilla",), seed=seed, device=device, log=log)
