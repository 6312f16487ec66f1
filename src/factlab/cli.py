"""The `factlab` command. Its verbs are the experiment's steps, with the course's arguments, so
`python src/run.py pretrain vanilla wiki.txt --writing_params_path ...` becomes `factlab pretrain vanilla wiki.txt ...`.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import FactlabError, __version__, experiment
from .evaluate import report
from .model import VARIANTS


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model size (default: the checkpoint's, else the course's 4 layers, 8 heads, 256 dims)")
    g.add_argument("--block_size", type=int, help="longest input in characters (course: 128)")
    g.add_argument("--n_layer", type=int)
    g.add_argument("--n_head", type=int)
    g.add_argument("--n_embd", type=int)
    g.add_argument("--bottleneck_dim", type=int, help="perceiver: number of latents m (default 32)")
    g.add_argument("--dropout", type=float)


def add_training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (default: the course's hyperparameters)")
    g.add_argument("--max_epochs", type=int)
    g.add_argument("--batch_size", type=int)
    g.add_argument("--learning_rate", type=float)
    g.add_argument("--pretrain_lr", type=float, help="course alias of --learning_rate for pretrain")
    g.add_argument("--finetune_lr", type=float, help="course alias of --learning_rate for finetune")
    g.add_argument("--warmup_tokens", type=int)
    g.add_argument("--final_tokens", type=int)
    g.add_argument("--max_minutes", type=float, help="stop after this wall-clock time and still save")
    g.add_argument("--tb_expt_name", help="accepted for course compatibility; metrics go to PARAMS.metrics.jsonl")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--drop_non_ascii", action="store_true",
                   help="drop non-ASCII characters of the question files, as the course's NameDataset did "
                        "(default: keep them; wiki.txt and the gold answers spell names with them)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factlab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"factlab {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    for verb, helptext in (("pretrain", "pretrain on the corpus with span corruption"),
                           ("finetune", "finetune on question<TAB>answer lines (from scratch or a pretrained model)"),
                           ("evaluate", "answer the questions of a file greedily and score them by exact match")):
        p = verbs.add_parser(verb, help=helptext, description=helptext)
        p.add_argument("variant", choices=VARIANTS)
        p.add_argument("pretrain_corpus_path", help="wiki.txt: also defines the vocabulary")
        if verb != "pretrain":  # pretraining always starts from a fresh model
            p.add_argument("--reading_params_path", required=verb == "evaluate",
                           help="checkpoint to start from (finetune) or to evaluate")
        if verb == "evaluate":
            p.add_argument("--eval_corpus_path", required=True)
            p.add_argument("--outputs_path", help="predictions file, one answer a line")
        else:
            p.add_argument("--writing_params_path", required=True)
        if verb == "finetune":
            p.add_argument("--finetune_corpus_path", required=True)
        add_model_options(p)
        if verb != "evaluate":
            add_training_options(p)
        add_common(p)

    p = verbs.add_parser("london", help="score the baseline that answers London to every question")
    p.add_argument("--eval_corpus_path", required=True)
    p.add_argument("--outputs_path")

    p = verbs.add_parser("demo", help="the whole experiment on a generated synthetic corpus, in minutes on a CPU")
    p.add_argument("--out_dir", default="factlab-demo", help="where the corpus, checkpoints and predictions go")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (used by the tests)")

    p = verbs.add_parser("report", help="one self-contained HTML page on run directories (results, curves, attention)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a directory with results.json (demo, reproduce)")
    p.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default report.html)")
    p.add_argument("--question", help="question for the attention maps (default: the first evaluation question)")
    return parser


def training_overrides(args, lr_alias: str) -> dict:
    names = ("max_epochs", "batch_size", "warmup_tokens", "final_tokens", "max_minutes")
    overrides = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    lr = args.learning_rate if args.learning_rate is not None else getattr(args, lr_alias)
    if lr is not None:
        overrides["learning_rate"] = lr
    return overrides


def model_options(args) -> experiment.ModelOptions:
    return experiment.ModelOptions(args.block_size, args.n_layer, args.n_head, args.n_embd,
                                   args.bottleneck_dim, args.dropout)


def run(args) -> None:
    started = time.perf_counter()
    if args.verb == "pretrain":
        result = experiment.pretrain(args.variant, args.pretrain_corpus_path, args.writing_params_path,
                                     model_options(args), seed=args.seed, device=args.device,
                                     **training_overrides(args, "pretrain_lr"))
    elif args.verb == "finetune":
        result = experiment.finetune(args.variant, args.pretrain_corpus_path, args.finetune_corpus_path,
                                     args.writing_params_path, model_options(args), args.reading_params_path,
                                     seed=args.seed, device=args.device, drop_non_ascii=args.drop_non_ascii,
                                     **training_overrides(args, "finetune_lr"))
    elif args.verb == "evaluate":
        evaluation = experiment.evaluate(args.variant, args.pretrain_corpus_path, args.reading_params_path,
                                         args.eval_corpus_path, model_options(args), args.outputs_path,
                                         device=args.device, drop_non_ascii=args.drop_non_ascii)
        print(report(evaluation.score, args.outputs_path))
        return
    elif args.verb == "london":
        print(report(experiment.london(args.eval_corpus_path, args.outputs_path).score, args.outputs_path))
        return
    elif args.verb == "report":
        from .report import write_report

        print(f"wrote {write_report(args.run_dirs, args.output, question=args.question)}")
        return
    else:
        from .demo import run_demo

        run_demo(args.out_dir, seed=args.seed, device=args.device, quick=args.quick)
        return
    stop = " (stopped at --max_minutes)" if result.stopped_early else ""
    print(f"{args.verb}: {result.steps} steps, {result.epochs_done} epochs, final loss {result.final_loss:.4f}, "
          f"{result.tokens / max(result.seconds, 1e-9):,.0f} tokens/s, {time.perf_counter() - started:.1f} s{stop}; "
          f"wrote {args.writing_params_path}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except FactlabError as err:
        print(f"factlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("factlab: interrupted; no output was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
