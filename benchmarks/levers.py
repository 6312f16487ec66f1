"""The levers of the one-hour CPU recipes, each measured alone on the validation split, and their table.

    python benchmarks/levers.py --data ../shared/data/birthplaces --out runs/levers --list
    python benchmarks/levers.py --data ../shared/data/birthplaces --out runs/levers --run recite lm   # one at a time
    python benchmarks/levers.py --data ../shared/data/birthplaces --out runs/levers --table            # levers.md
    python benchmarks/levers.py --data ../shared/data/birthplaces --out results/levers --table --doc docs/selection.md

Each lever is `factlab reproduce --validation 400 --analyze --no_scratch --resume` of a recipe with one change
(`--override`), into OUT/NAME: it finetunes on the 1,600 training questions outside the validation split and
scores the 400, never dev. A run stopped midway goes on where it was when run again. The table gathers every
OUT/*/results.json: validation accuracy with its 95% interval, the facts the pretrained model recalls, the
accuracy at 50% coverage, the ECE, the pretraining epochs (how often each biography was seen), how many of those
draws held the birthplace (span corruption truncates most biographies before it), the times (a distilling
lever's include its teacher's finetuning and the labelling) and the training speed, which says what the hour
was worth on the machine (its CPU kernels: AVX512 machines train faster).
Run the levers one at a time on an otherwise quiet machine: the CPU recipes stop pretraining by the clock.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from factlab import FactlabError, experiment
from factlab.analysis import median_exposures, pretraining_exposures
from factlab.data import VALIDATION_QUESTIONS, VALIDATION_SEED, CorpusIndex, Question, validation_split
from factlab.io import read_json, read_text, write_text_atomic
from factlab.recipes import COURSE, overridden, recipe
from factlab.reproduce import DataFiles, pretrained_origin, reproduce
from factlab.state import state_path
from factlab.statistics import wilson_interval

# name: (recipe, overrides, variant); each changes one thing of its recipe
LEVERS = {
    "recite": ("cpu-recite", [], "vanilla"),
    # the finetuning of recite's pretrained model (shared: minutes each)
    "recite-ft-lr-3e-4": ("cpu-recite", ["finetune.learning_rate=3e-4"], "vanilla"),
    "recite-ft-lr-3e-5": ("cpu-recite", ["finetune.learning_rate=3e-5"], "vanilla"),
    "recite-ft-epochs-20": ("cpu-recite", ["finetune.max_epochs=20"], "vanilla"),
    "marked": ("cpu-recite", ["answer_format=recite-marked"], "vanilla"),
    "recite-lm": ("cpu-recite", ["pretrain.objective=lm"], "vanilla"),
    "recite-mix": ("cpu-recite", ["pretrain.objective=mix"], "vanilla"),
    "recite-mix-ft-lr-3e-4": ("cpu-recite", ["pretrain.objective=mix", "finetune.learning_rate=3e-4"], "vanilla"),
    "recite-mix-ft-lr-3e-5": ("cpu-recite", ["pretrain.objective=mix", "finetune.learning_rate=3e-5"], "vanilla"),
    "recite-mix-ft-epochs-5": ("cpu-recite", ["pretrain.objective=mix", "finetune.max_epochs=5"], "vanilla"),
    "recite-mix-ft-epochs-20": ("cpu-recite", ["pretrain.objective=mix", "finetune.max_epochs=20"], "vanilla"),
    "recite-mix-span-0.2": ("cpu-recite", ["pretrain.objective=mix", "pretrain.span_share=0.2"], "vanilla"),
    "recite-mix-rope": ("cpu-recite", ["pretrain.objective=mix"], "rope"),
    "recite-mix-questions-0.3": ("cpu-recite", ["pretrain.objective=mix", "pretrain.question_share=0.3"], "vanilla"),
    # lm pretraining never shows ⁇, so the recitation finetuning at 1e-4 rarely learns to close one
    "recite-lm-ft-lr-1e-3": ("cpu-recite", ["pretrain.objective=lm", "finetune.learning_rate=1e-3"], "vanilla"),
    "recite-lm-ft-lr-3e-4": ("cpu-recite", ["pretrain.objective=lm", "finetune.learning_rate=3e-4"], "vanilla"),
    # the place marked inside the recitation: nothing to copy after it (formats.py, recite-marked)
    "marked-lm": ("cpu-recite", ["pretrain.objective=lm", "answer_format=recite-marked"], "vanilla"),
    "marked-lm-ft-lr-3e-4": ("cpu-recite", ["pretrain.objective=lm", "answer_format=recite-marked",
                                            "finetune.learning_rate=3e-4"], "vanilla"),
    # the levers not yet measured, on the mix pretraining of cpu-best
    "recite-mix-batch-32": ("cpu-recite", ["pretrain.objective=mix", "pretrain.batch_size=32"], "vanilla"),
    "recite-mix-lr-2e-3": ("cpu-recite", ["pretrain.objective=mix", "pretrain.learning_rate=2e-3"], "vanilla"),
    "recite-mix-wd-0.1": ("cpu-recite", ["pretrain.objective=mix", "pretrain.weight_decay=0.1"], "vanilla"),
    "recite-mix-width-192": ("cpu-recite", ["pretrain.objective=mix", "model.n_embd=192", "model.n_head=6"],
                             "vanilla"),
    "recite-mix-depth-6": ("cpu-recite", ["pretrain.objective=mix", "model.n_layer=6"], "vanilla"),
    # salient span masking (data.salient_spans): half the span-corruption draws mask a capitalised run, a place
    "recite-mix-salient-0.5": ("cpu-recite", ["pretrain.objective=mix", "pretrain.salient_share=0.5"], "vanilla"),
    "direct-mix-salient-0.5": ("cpu-fast", ["pretrain.objective=mix", "pretrain.salient_share=0.5"], "vanilla"),
    "direct-salient-0.5": ("cpu-fast", ["pretrain.salient_share=0.5"], "vanilla"),
    # the course's dropout; Part 3.3 trains without, as cpu-recite does
    "recite-mix-dropout-0.1": ("cpu-recite", ["pretrain.objective=mix", "model.dropout=0.1"], "vanilla"),
    # self-distillation into the course's format (distill.py): cpu-best's recitation model labels every other
    # person of wiki.txt, the validation people among them; on recite-mix's pretraining, minutes each
    "distill-mix": ("cpu-distill", [], "vanilla"),
    "distill-mix-ft-lr-1e-4": ("cpu-distill", ["finetune.learning_rate=1e-4"], "vanilla"),
    "distill-mix-ft-lr-1e-3": ("cpu-distill", ["finetune.learning_rate=1e-3"], "vanilla"),
    "distill-mix-ft-epochs-20": ("cpu-distill", ["finetune.max_epochs=20"], "vanilla"),
    "distill-mix-ft-lr-3e-3": ("cpu-distill", ["finetune.learning_rate=3e-3"], "vanilla"),
    "distill-mix-ft-lr-1e-3-epochs-20": ("cpu-distill", ["finetune.learning_rate=1e-3", "finetune.max_epochs=20"],
                                         "vanilla"),
    "direct": ("cpu-fast", [], "vanilla"),
    "direct-ft-lr-1e-3": ("cpu-fast", ["finetune.learning_rate=1e-3"], "vanilla"),
    "direct-ft-lr-1e-4": ("cpu-fast", ["finetune.learning_rate=1e-4"], "vanilla"),
    "direct-ft-epochs-20": ("cpu-fast", ["finetune.max_epochs=20"], "vanilla"),
    "direct-questions-0.3": ("cpu-fast", ["pretrain.question_share=0.3"], "vanilla"),
    "direct-questions-0.6": ("cpu-fast", ["pretrain.question_share=0.6"], "vanilla"),
    "direct-lm": ("cpu-fast", ["pretrain.objective=lm"], "vanilla"),
    "direct-mix": ("cpu-fast", ["pretrain.objective=mix"], "vanilla"),
    "direct-mix-ft-lr-1e-3": ("cpu-fast", ["pretrain.objective=mix", "finetune.learning_rate=1e-3"], "vanilla"),
    "direct-mix-ft-lr-1e-4": ("cpu-fast", ["pretrain.objective=mix", "finetune.learning_rate=1e-4"], "vanilla"),
    "direct-mix-questions-0.3": ("cpu-fast", ["pretrain.objective=mix", "pretrain.question_share=0.3"], "vanilla"),
    "direct-lm-ft-lr-1e-3": ("cpu-fast", ["pretrain.objective=lm", "finetune.learning_rate=1e-3"], "vanilla"),
    "direct-lm-questions-0.3": ("cpu-fast", ["pretrain.objective=lm", "pretrain.question_share=0.3"], "vanilla"),
    "recite-lm-questions-0.3": ("cpu-recite", ["pretrain.objective=lm", "pretrain.question_share=0.3",
                                               "finetune.learning_rate=3e-4"], "vanilla"),
    "marked-lm-questions-0.3": ("cpu-recite", ["pretrain.objective=lm", "pretrain.question_share=0.3",
                                               "answer_format=recite-marked", "finetune.learning_rate=3e-4"],
                                "vanilla"),
}


def run_lever(name: str, data: Path, out: Path, device: str) -> None:
    base, overrides, variant = LEVERS[name]
    reproduce(DataFiles.in_dir(data), out / name, overridden(recipe(base), overrides), variants=(variant,),
              device=device, resume=True, validation=VALIDATION_QUESTIONS, analyze=True, scratch=False,
              pretrained_from=shared_source(name, out))


def pretraining_of(name: str) -> tuple:
    """What a lever's pretraining is: its model, its pretraining options and its variant."""
    base, overrides, variant = LEVERS[name]
    return overridden(recipe(base), overrides).resolved("pretrain"), variant


def shared_source(name: str, out: Path) -> Path | None:
    """The folder of a finished lever that pretrains as this one does (this one changes only the finetuning or
    the answer format): its pretrained model is this lever's start (reproduce's pretrained_from), so an hour of
    pretraining is not spent twice, and the row's pretraining time and epochs are that run's. None when no such
    lever has finished, or this lever has its pretrained model (or a part of it) already."""
    variant = LEVERS[name][2]
    target = out / name / f"{variant}.pretrain.params"
    if target.exists() or state_path(target).exists():
        return None
    for other in LEVERS:
        source = out / other / target.name
        if (other != name and pretraining_of(other) == pretraining_of(name) and source.is_file()
                and (out / other / "results.json").is_file() and not state_path(source).exists()
                and pretrained_origin(source) is None):  # the run that pretrained, not a copy of it
            return out / other
    return None


def lever_exposures(name: str, row: dict, index: CorpusIndex, validation: list[Question]) -> float | None:
    """How many pretraining draws held a validation person's birthplace, the median over the 400
    (analysis.pretraining_exposures): from the analysis when it has it, else from the lever's recipe and epochs
    (runs analysed before exposures were counted)."""
    if "exposures_median" in row["analysis"]:
        return row["analysis"]["exposures_median"]
    if name not in LEVERS:
        return None
    base, overrides, variant = LEVERS[name]
    model, training = overridden(recipe(base), overrides).resolved("pretrain")
    info = {"pretraining": {"objective": COURSE["pretrain"].overridden_by(training).objective},
            "result": {"epochs_done": row["stage_seconds"]["pretrain_epochs"]}}
    return median_exposures(pretraining_exposures(index, validation, info, model.config(variant, 0).block_size))


TABLE_HEADER = ("| lever | validation exact match (95% interval) | recalled by the pretrained model | "
                "answered right, of those recalled | accuracy at 50% coverage | ECE | pretraining epochs | "
                "draws that held the place | pretraining + finetuning | pretraining tokens/s (CPU kernels) |")


def lever_label(name: str, results: dict, link: str, variant: str) -> str:
    """`[NAME](LINK) (pretraining of OTHER): `override`, ...` and the variant when it is not vanilla; a lever
    that is its recipe as it is says so."""
    base, _, overrides = results["recipe"]["name"].partition(" ")
    changes = ", ".join(f"`{o}`" for o in overrides.split()) or f"`{base}` as it is"
    shared = f" (pretraining of {results['pretraining_from']})" if "pretraining_from" in results else ""
    return f"[{name}]({link}){shared}: {changes}" + ("" if variant == "vanilla" else f" ({variant})")


def table(out: Path, data: Path, page_dir: Path) -> str:
    """The levers measured so far, as Markdown, from every OUT/*/results.json; each lever links its
    results.json relative to page_dir, the folder of the page the table goes in."""
    files = DataFiles.in_dir(data)
    index = CorpusIndex(read_text(files.wiki))
    validation = validation_split(experiment.read_questions(files.train, require_answers=True),
                                  VALIDATION_QUESTIONS, VALIDATION_SEED, str(files.train))[1]
    lines = [TABLE_HEADER, "| --- " * TABLE_HEADER.count(" | ") + "| --- |"]
    for path in sorted(out.glob("*/results.json")):
        results = read_json(path)
        for row in results["rows"]:
            if "analysis" not in row:
                continue
            low, high = wilson_interval(row["correct"], row["total"])
            a, times = row["analysis"], row["stage_seconds"]
            recall = a.get("recall") or {}
            epochs = times.get("pretrain_epochs")
            exposures = lever_exposures(path.parent.name, row, index, validation)
            link = Path(os.path.relpath(path, page_dir)).as_posix()
            lines.append(
                f"| {lever_label(path.parent.name, results, link, row['variant'])} | {row['correct']}/{row['total']}"
                f" = {row['percent']:.1f}% ({100 * low:.1f}–{100 * high:.1f}%) | "
                f"{recall.get('recalled', '–')}/{recall.get('probed', '–')} | "
                f"{recall.get('correct_when_recalled', '–')}/{recall.get('recalled', '–')} | "
                f"{100 * a['accuracy_at_50']:.1f}% | "
                f"{a['ece']:.3f} | {'–' if epochs is None else f'{epochs:.0f}'} | "
                f"{'–' if exposures is None else f'{exposures:.0f}'} | "
                f"{times['pretrain'] + times.get('teaching', 0) + times['finetune']:,.0f} s | "
                f"{times['pretrain_tokens_per_s']:,.0f} "
                f"({results['hardware'].get('cpu_capability', 'not recorded')}) |")
    return "\n".join(lines) + "\n"


def with_table(page: Path, text: str, new_table: str) -> str:
    """The page's text with its lever table (from the header line to the first blank line) replaced."""
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("| lever |"))
    except StopIteration:
        raise FactlabError(f"{page}: has no lever table (a line starting with '| lever |') to replace") from None
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "".join(lines[:start]) + new_table + "".join(lines[end:])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with wiki.txt and birth_places_train.tsv")
    ap.add_argument("--out", required=True, help="each lever's run folder goes in OUT/NAME")
    ap.add_argument("--run", nargs="+", choices=LEVERS, metavar="LEVER", help="levers to run, one after another")
    ap.add_argument("--list", action="store_true", help="list the levers")
    ap.add_argument("--table", action="store_true", help="write OUT/levers.md from the runs so far and print it")
    ap.add_argument("--doc", metavar="PAGE", help="with --table: also replace the lever table in this Markdown page "
                    "(links relative to it)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.list:
        for name, (base, overrides, variant) in LEVERS.items():
            print(f"{name}: {base} {variant} {' '.join(overrides) or '(as it is)'}")
    for name in args.run or []:
        run_lever(name, Path(args.data), out, args.device)
    if args.table:
        text = table(out, Path(args.data), out)
        write_text_atomic(out / "levers.md", text)
        print(text, end="")
        if args.doc:
            page = Path(args.doc)
            write_text_atomic(page, with_table(page, read_text(page), table(out, Path(args.data), page.parent)))


if __name__ == "__main__":
    try:
        main()
    except FactlabError as err:
        sys.exit(f"error: {err}")
