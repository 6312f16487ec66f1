"""factlab: teach small transformers facts and measure what they learned.

The verbs are the steps of the CS224N experiment and take the course's arguments: `python src/run.py pretrain
vanilla wiki.txt --writing_params_path P` becomes `factlab pretrain vanilla wiki.txt --writing_params_path P`.
`factlab VERB --help` lists a verb's options.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from dataclasses import fields

import torch

from . import FactlabError, __version__, experiment
from .evaluate import report
from .lab import add_lab_parser, run_lab
from .model import SYNTHESIZER_B, VARIANTS
from .data import BATCHINGS, NON_ASCII, OBJECTIVES, VALIDATION_QUESTIONS, VALIDATION_SEED
from .formats import FORMATS
from .recipes import RECIPES, ModelOptions, Training, overridden, recipe
from .reproduce import DataFiles, reproduce
from .train import DECAY_GROUPS, LR_SCHEDULES, PRECISIONS, ranks


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model size (default: the checkpoint's, else the course's 4 layers, 8 heads, 256 dims)")
    g.add_argument("--block_size", type=int, help="longest input in characters (course: 128)")
    g.add_argument("--n_layer", type=int)
    g.add_argument("--n_head", type=int)
    g.add_argument("--n_embd", type=int)
    g.add_argument("--bottleneck_dim", type=int, help="perceiver: number of latents m (default 32)")
    g.add_argument("--dropout", type=float)
    g.add_argument("--synthesizer_b", choices=SYNTHESIZER_B, help="synthesizer: shared (default: one B for all "
                   "heads, as the course's code) or per-head (one B_i per head, as the handout's formula)")


def add_training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (default: the course's hyperparameters)")
    g.add_argument("--max_epochs", type=int)
    g.add_argument("--batch_size", type=int)
    g.add_argument("--learning_rate", type=float)
    g.add_argument("--pretrain_lr", type=float, help="course alias of --learning_rate for pretrain")
    g.add_argument("--finetune_lr", type=float, help="course alias of --learning_rate for finetune")
    g.add_argument("--warmup_tokens", type=int)
    g.add_argument("--final_tokens", type=int)
    g.add_argument("--weight_decay", type=float, help="AdamW's decoupled weight decay (course: 0.1)")
    g.add_argument("--weight_decay_groups", choices=DECAY_GROUPS, help="which parameters decay: course (default: "
                   "every parameter but the biases, as the course's Trainer) or matmul (matmul weights only)")
    g.add_argument("--lr_schedule", choices=LR_SCHEDULES, help="course (default: the Trainer's warm-up and cosine, "
                   "unclamped, so it rises again after final_tokens) or floor (held at 10%% after final_tokens, "
                   "following the clock under --max_minutes)")
    g.add_argument("--batching", choices=BATCHINGS, help="course (default: the examples in file order, as the "
                   "course's DataLoader) or length (examples of similar length together, in a new order every "
                   "epoch: less padding)")
    g.add_argument("--micro_batch", type=int, metavar="ROWS", help="compute each batch in passes of ROWS rows "
                   "sorted by length, each padded to its own longest: the same gradient with less padding "
                   "(docs/performance.md)")
    g.add_argument("--max_steps", type=int, help="stop after this many optimizer steps (a run records its steps)")
    g.add_argument("--non_ascii", choices=NON_ASCII, help="non-ASCII characters of the questions trained on "
                   "(finetuning, --mix_questions): drop (default: as the course's NameDataset, 'Ákos' becomes "
                   "'kos') or keep (as wiki.txt spells the names; factlab's CPU recipes)")
    g.add_argument("--replay_rates", metavar="METRICS", help="take each step's learning rate from a run's "
                   "PARAMS.metrics.jsonl, for as many steps as it records: with the same seed and options but "
                   "without --max_minutes, it replays a time-limited run exactly")
    g.add_argument("--max_minutes", type=float, help="stop after this wall-clock time and still save (under "
                   "--lr_schedule floor the cosine follows the clock when that is further along than the tokens)")
    g.add_argument("--resume", action="store_true", help="continue the run from its training state "
                   "WRITING_PARAMS_PATH.state (saved every --save_every_minutes and when the run stops)")
    g.add_argument("--save_every_minutes", type=float, default=10.0, metavar="M",
                   help="save the training state every M minutes (default 10; fractions allowed)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on long GPU runs)")
    g.add_argument("--precision", choices=PRECISIONS, help="bf16 autocast or fp32 (default: the recipe's; course: fp32, "
                   "the CPU recipes: auto, bf16 on a GPU and fp32 on a CPU; bf16 is faster on CPUs with "
                   "avx512_bf16 or AMX, far slower on others)")
    g.add_argument("--tb_expt_name", help="also write the per-step metrics for TensorBoard to "
                   "expt/VERB/NAME_VARIANT (the course's `tensorboard --logdir expt/`; needs the tensorboard "
                   "extra); PARAMS.metrics.jsonl is written either way")
    g.add_argument("--recipe", choices=RECIPES, help="a named option set (default: course; `factlab reproduce "
                   "--help` lists them); options given here override its values")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factlab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"factlab {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    for verb, helptext in (("pretrain", "pretrain on the corpus with span corruption"),
                           ("finetune", "finetune on question<TAB>answer lines (from scratch or a pretrained model)"),
                           ("evaluate", "answer the questions of a file greedily and score them by exact match"),
                           ("analyze", "answer a question file with confidences and analyse the answers against "
                                       "the corpus (JSON)")):
        p = verbs.add_parser(verb, help=helptext, description=helptext)
        p.add_argument("variant", choices=VARIANTS)
        p.add_argument("pretrain_corpus_path", help="wiki.txt: also defines the vocabulary")
        if verb != "pretrain":  # pretraining always starts from a fresh model
            p.add_argument("--reading_params_path", required=verb != "finetune",
                           help="checkpoint to start from (finetune) or to evaluate")
        if verb == "evaluate":
            p.add_argument("--eval_corpus_path", required=True)
            p.add_argument("--outputs_path", help="predictions file, one answer a line")
            p.add_argument("--abstain_below", type=float, metavar="P",
                           help='answer "unknown" when the probability of the answer (and its closing ⁇; for a recite '
                                'model, of the place recited and answered) is below P')
        elif verb == "analyze":
            p.add_argument("--eval_corpus_path", required=True, help="question<TAB>answer lines")
            p.add_argument("--train_corpus_path", help="the finetuning file: nearest training names, answer "
                                                       "frequencies")
            p.add_argument("--outputs_path", help="the analysis as JSON (schema in factlab/analysis.py)")
            p.add_argument("--calibrate_on", metavar="ANALYSIS", help="fit Platt scaling of the confidence on the "
                           "records of this `factlab analyze` JSON (a model's answers to validation questions) and "
                           "report the calibrated confidences' reliability and ECE")
            p.add_argument("--recall_params_path", metavar="PRETRAINED",
                           help="the pretrained checkpoint the model was finetuned from: probe whether it recalls "
                                "each gold place from the person's biography, and split accuracy by that")
        else:
            p.add_argument("--writing_params_path", required=True)
        if verb == "finetune":
            p.add_argument("--finetune_corpus_path", required=True)
            p.add_argument("--answer_format", choices=FORMATS,
                           help="direct (default, the course's): 'question⁇answer⁇'; recite: 'NAME.' + the "
                                "person's biography up to the place + '⁇answer⁇', so the model answers by reciting "
                                "what it memorised (the checkpoint records it; evaluate follows it)")
        add_model_options(p)
        if verb in ("pretrain", "finetune"):
            add_training_options(p)
        if verb == "pretrain":
            g = p.add_argument_group("what pretraining reads (default: the course's span corruption of wiki.txt)")
            g.add_argument("--objective", choices=OBJECTIVES, help="span: span corruption (the course's); lm: each "
                           "document's first block_size characters as language modelling from position 0; mix: "
                           "either, at random, at every draw")
            g.add_argument("--span_share", type=float, metavar="F", help="with --objective mix: the chance that a "
                           "draw is span corruption rather than language modelling (default 0.5)")
            g.add_argument("--salient_share", type=float, metavar="F", help="the chance that a span-corruption "
                           "draw masks a salient span (a run of capitalised words: a place, a name) instead of a "
                           "random one (default 0: the course's random spans)")
            g.add_argument("--mix_questions", metavar="TSV", help="question<TAB>answer lines to mix into "
                           "pretraining, in the course's answer format (with --question_share)")
            g.add_argument("--question_share", type=float, metavar="F", help="the share of every epoch's examples "
                           "that are questions of --mix_questions (default 0: none)")
        add_common(p)

    p = verbs.add_parser("label", help="self-distillation: a finetuned model (the teacher) answers for every person "
                         "of the corpus whose name the training questions leave out; writes the training questions "
                         "and its answers as one finetuning file (docs/distillation.md)")
    p.add_argument("variant", choices=VARIANTS)
    p.add_argument("pretrain_corpus_path", help="wiki.txt: its documents' titles are the people asked about")
    p.add_argument("--reading_params_path", required=True, help="the teacher: it answers in the format it was "
                   "finetuned in (a recite model, say)")
    p.add_argument("--finetune_corpus_path", required=True, help="the training questions (question<TAB>answer)")
    p.add_argument("--outputs_path", required=True, help="the finetuning file to write (question<TAB>answer)")
    add_model_options(p)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")

    p = verbs.add_parser("ask", help="answer one question (or each line of stdin) with its probability, "
                                     "alternatives and what the corpus says",
                         usage="factlab ask [VARIANT] WIKI --reading_params_path P [QUESTION]")
    p.add_argument("words", nargs="+", metavar="[VARIANT] WIKI [QUESTION]",
                   help="variant (default: the checkpoint's), wiki.txt, and the question; without a question, "
                        "questions are read from stdin, one a line, until EOF")
    p.add_argument("--reading_params_path", required=True)
    p.add_argument("--train_corpus_path", help="the finetuning file: its answers are the places looked for in "
                                               "the person's document")
    p.add_argument("--top_k", type=int, default=5, help="alternatives: the k likeliest first characters, each "
                                                       "continued greedily (default 5)")
    add_model_options(p)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")

    p = verbs.add_parser("london", help="score the baseline that answers London to every question")
    p.add_argument("--eval_corpus_path", required=True)
    p.add_argument("--outputs_path")

    p = verbs.add_parser("compare", help="score two predictions files on the same questions, question by question, "
                         "with an exact McNemar test of whether they differ")
    p.add_argument("--eval_corpus_path", required=True, help="the questions with their gold answers")
    p.add_argument("predictions", nargs=2, metavar="PREDICTIONS", help="two predictions files, one answer a line")

    p = verbs.add_parser("split", help="hold out validation questions from a finetuning file (choose settings "
                         "on them, never on dev): writes OUT_DIR/train.tsv and OUT_DIR/validation.tsv")
    p.add_argument("--finetune_corpus_path", required=True, help="question<TAB>answer lines")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--validation", type=int, default=VALIDATION_QUESTIONS, metavar="N",
                   help=f"questions held out (default {VALIDATION_QUESTIONS})")
    p.add_argument("--seed", type=int, default=VALIDATION_SEED, help=f"which N (default {VALIDATION_SEED})")

    p = verbs.add_parser("reproduce", help="the whole experiment under a recipe: London, no pretraining, pretrain + "
                         "finetune per variant, with a results table", description=reproduce_doc(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", required=True, help="holds wiki.txt, birth_places_train.tsv, birth_dev.tsv "
                   "(and birth_test_inputs.tsv, answered too when present)")
    p.add_argument("--out_dir", required=True, help="checkpoints, predictions, results.md and results.json go here")
    p.add_argument("--recipe", choices=RECIPES, default="cpu-fast")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--resume", action="store_true", help="skip the stages already finished in OUT_DIR and continue "
                   "a stopped one from its training state")
    p.add_argument("--precision", choices=PRECISIONS, help="every stage's precision (default: the recipe's)")
    p.add_argument("--micro_batch", type=int, metavar="ROWS", help="every stage's batches computed in passes of "
                   "ROWS rows sorted by length: the same steps with less padding (see pretrain --help)")
    p.add_argument("--validation", type=int, metavar="N", help="choose settings, never touching dev: finetune on "
                   "the training questions but N held out (as `factlab split`: OUT_DIR/train.tsv) and score the N "
                   f"(OUT_DIR/validation.tsv) instead of dev and test (N = {VALIDATION_QUESTIONS} is the "
                   "project's split)")
    p.add_argument("--analyze", action="store_true", help="also analyse every pretrained model's answers "
                   "(NAME.analysis.json: confidence, risk–coverage, calibration, the pretrained model's recall of "
                   "each fact), with the key numbers in results.json")
    p.add_argument("--calibrate", type=int, metavar="N", help="a final run's: also finetune without N held-out "
                   f"training questions (N = {VALIDATION_QUESTIONS}: the validation split), analyse its answers to "
                   "them, and calibrate the final model's confidence on them (implies --analyze)")
    p.add_argument("--no_scratch", action="store_true", help="leave out the finetuning without pretraining")
    p.add_argument("--pretrained_from", metavar="RUN_DIR", help="start from the finished pretrained model of "
                   "another reproduce folder that pretrained as this recipe does (the same model, pretraining "
                   "settings and seed; e.g. cpu-direct from a cpu-best run), copied here and named in "
                   "results.json; its pretraining time counts as this run's")
    p.add_argument("--override", action="append", default=[], metavar="STAGE.NAME=VALUE",
                   help="change one setting of the recipe, e.g. pretrain.objective=lm, finetune.learning_rate=3e-4, "
                   "model.n_embd=256, answer_format=recite, teacher_format=recite or teacher.learning_rate=1e-4 "
                   "(a distilling recipe's teacher, docs/distillation.md; repeatable; recorded in results.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")

    p = verbs.add_parser("demo", help="the whole experiment on a generated synthetic corpus, in minutes on a CPU")
    p.add_argument("--out_dir", default="factlab-demo", help="where the corpus, checkpoints and predictions go")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (used by the tests)")
    add_lab_parser(verbs)

    p = verbs.add_parser("snapshot", help="write the model of a run in progress (its training state) as a "
                         "checkpoint to evaluate, analyze or ask, while the run goes on")
    p.add_argument("state_path", metavar="STATE", help="the run's PARAMS.state, e.g. runs/course-vanilla/"
                   "vanilla.pretrain.params.state")
    p.add_argument("pretrain_corpus_path", help="wiki.txt: the corpus the run trains on (its vocabulary)")
    p.add_argument("--writing_params_path", required=True, help="the checkpoint to write")

    p = verbs.add_parser("export", help="copy a run folder's small outputs (results, predictions, analyses, thinned "
                         "training curves; no checkpoints, no data) into a folder such as results/RUN")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory with results.json (reproduce, demo)")
    p.add_argument("to", metavar="TO", help="the folder to write, e.g. results/course-vanilla")

    p = verbs.add_parser("report", help="one self-contained HTML page on run directories (results, curves, attention)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a directory with results.json (demo, reproduce)")
    p.add_argument("-o", "--output", default="report.html", help="the HTML file to write (default report.html)")
    p.add_argument("--question", help="question for the attention maps (default: the first evaluation question)")
    p.add_argument("--data_dir", help="where the data files that results.json names live, when they are not in "
                   "the RUN_DIR (a `factlab reproduce` on ../shared/data/birthplaces, or results/ in the repository)")
    return parser


def reproduce_doc() -> str:
    """reproduce's description, one paragraph per recipe (docs/recipes.md has what each measured)."""
    text = ("Runs the London baseline and, for each variant, finetuning without pretraining and pretraining + "
            "finetuning; answers the dev questions (and the test inputs); writes results.md and results.json.")
    recipes = [textwrap.fill(f"{name}: {r.description}", 100, initial_indent="  ", subsequent_indent="    ",
                             break_on_hyphens=False)
               for name, r in RECIPES.items()]
    return "\n".join([textwrap.fill(text, 100), "", "recipes:", *recipes])


def training_options(args, lr_alias: str) -> Training:
    """The training settings the command line gives (None where it gives none)."""
    lr = args.learning_rate if args.learning_rate is not None else getattr(args, lr_alias)
    given = {f.name: getattr(args, f.name, None) for f in fields(Training)}
    return Training(**{**given, "learning_rate": lr, "compile": args.compile or None})


def model_options(args) -> ModelOptions:
    """The model sizes the command line gives (None where it gives none: the checkpoint's, else the course's)."""
    return ModelOptions(args.block_size, args.n_layer, args.n_head, args.n_embd, args.bottleneck_dim, args.dropout,
                        args.synthesizer_b)


def resolved(args, stage: str) -> tuple[ModelOptions, Training]:
    """The model and training of a training command: the recipe's (the course's without --recipe) with the
    command line's options on top, as `factlab reproduce` resolves a recipe."""
    lr_alias = "pretrain_lr" if stage == "pretrain" else "finetune_lr"
    return recipe(args.recipe).resolved(stage, model_options(args), training_options(args, lr_alias))


def run_control(args) -> experiment.RunControl:
    board = f"expt/{args.verb}/{args.tb_expt_name}_{args.variant}" if args.tb_expt_name else None
    return experiment.RunControl(resume=args.resume, save_every_minutes=args.save_every_minutes,
                                 tensorboard_dir=board)


def run(args) -> int | None:
    started = time.perf_counter()
    if args.verb == "pretrain":
        options, training = resolved(args, "pretrain")
        result = experiment.pretrain(args.variant, args.pretrain_corpus_path, args.writing_params_path, options,
                                     training, seed=args.seed, device=args.device, control=run_control(args),
                                     questions_path=args.mix_questions)
    elif args.verb == "finetune":
        stage = "finetune" if args.reading_params_path else "scratch"
        options, training = resolved(args, stage)
        chosen = recipe(args.recipe)
        answer_format = args.answer_format or (chosen.answer_format if stage == "finetune" else "direct")
        result = experiment.finetune(args.variant, args.pretrain_corpus_path, args.finetune_corpus_path,
                                     args.writing_params_path, options, args.reading_params_path, training,
                                     seed=args.seed, device=args.device, answer_format=answer_format,
                                     control=run_control(args))
    elif args.verb == "evaluate":
        evaluation = experiment.evaluate(args.variant, args.pretrain_corpus_path, args.reading_params_path,
                                         args.eval_corpus_path, model_options(args), args.outputs_path,
                                         device=args.device, abstain_below=args.abstain_below)
        print(report(evaluation.score, args.outputs_path))
        if evaluation.abstention is not None:
            print(evaluation.abstention)
        return
    elif args.verb == "analyze":
        from .analysis import format_summary, run_analysis

        result = run_analysis(args.variant, args.pretrain_corpus_path, args.reading_params_path,
                              args.eval_corpus_path, model_options(args), args.train_corpus_path,
                              args.outputs_path, device=args.device, recall_params_path=args.recall_params_path,
                              calibrate_on=args.calibrate_on)
        print(format_summary(result) + (f"\nwrote {args.outputs_path}" if args.outputs_path else ""))
        return
    elif args.verb == "label":
        from .distill import label_corpus

        labelled = label_corpus(args.reading_params_path, args.variant, args.pretrain_corpus_path,
                                args.finetune_corpus_path, args.outputs_path, model_options(args), args.device)
        print(f"wrote {args.outputs_path}: {labelled}")
        return
    elif args.verb == "ask":
        from .ask import run_ask

        words = args.words
        variant = words.pop(0) if len(words) >= 2 and words[0] in VARIANTS else None
        question = " ".join(words[1:]) or None
        return run_ask(words[0], args.reading_params_path, question, variant, model_options(args),
                       device=args.device, train_corpus_path=args.train_corpus_path, k=args.top_k)
    elif args.verb == "lab":
        run_lab(args)
        return
    elif args.verb == "london":
        print(report(experiment.london(args.eval_corpus_path, args.outputs_path).score, args.outputs_path))
        return
    elif args.verb == "reproduce":
        reproduce(DataFiles.in_dir(args.data_dir), args.out_dir, overridden(recipe(args.recipe), args.override),
                  variants=args.variants, seed=args.seed,
                  device=args.device, resume=args.resume, precision=args.precision, micro_batch=args.micro_batch,
                  validation=args.validation,
                  analyze=args.analyze, calibrate=args.calibrate, scratch=not args.no_scratch,
                  pretrained_from=args.pretrained_from)
        return
    elif args.verb == "compare":
        from .evaluate import compare, read_predictions

        questions = experiment.read_questions(args.eval_corpus_path, require_answers=True)
        a, b = (read_predictions(path, len(questions)) for path in args.predictions)
        print("\n".join(compare(questions, a, b).lines(*args.predictions)))
        return
    elif args.verb == "split":
        train, held_out = experiment.split(args.finetune_corpus_path, args.out_dir, args.validation, args.seed)
        print(f"wrote {train} ({len(experiment.read_questions(train))} questions) and {held_out} "
              f"({args.validation} questions, seed {args.seed})")
        return
    elif args.verb == "snapshot":
        info = experiment.snapshot(args.state_path, args.pretrain_corpus_path, args.writing_params_path)
        shot = info["snapshot"]
        print(f"wrote {args.writing_params_path}: the {info['stage']} model at step {shot['step']} (epoch "
              f"{shot['epoch']}, {shot['batches_of_epoch']} batches of it taken), loss {info['result']['final_loss']:.4f}")
        return
    elif args.verb == "export":
        from .export import export

        written = export(args.run_dir, args.to)
        print(f"wrote {len(written)} files to {args.to}")
        return
    elif args.verb == "report":
        from .report import write_report

        print(f"wrote {write_report(args.run_dirs, args.output, question=args.question, data_dir=args.data_dir)}")
        return
    else:
        from .demo import run_demo

        run_demo(args.out_dir, seed=args.seed, device=args.device, quick=args.quick)
        return
    if not ranks().is_main:
        return
    stop = " (stopped at --max_minutes or --max_steps)" if result.stopped_early else ""
    stop += f" (resumed from step {result.resumed_from_step})" if result.resumed_from_step is not None else ""
    print(f"{args.verb}: {result.steps} steps, {result.epochs_done} epochs, final loss {result.final_loss:.4f}, "
          f"{result.tokens / max(result.seconds, 1e-9):,.0f} tokens/s, {time.perf_counter() - started:.1f} s{stop}; "
          f"wrote {args.writing_params_path}")


def parse_command_line(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # ask's question may follow the options, and unquoted
        if args.verb != "ask" or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.words += extra
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(argv)
    try:
        status = run(args)
        if torch.distributed.is_initialized():
            # Rank 0 may still be saving: no rank tears the group down while another still works. Without this,
            # a rank once aborted in teardown ("terminate called without an active exception"); the cause is
            # not proven, and the failure was not reproduced in 16 later runs.
            torch.distributed.barrier()
    except experiment.RunInterrupted as stopped:
        if torch.distributed.is_initialized():
            torch.distributed.barrier()  # as above: rank 0 has written the checkpoint before any rank tears down
        if ranks().is_main:
            print(f"factlab: {stopped}", file=sys.stderr)
        return stopped.exit_status
    except FactlabError as err:
        print(f"factlab: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a lost mount...: one line naming the path, never a traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"factlab: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("factlab: interrupted before any output of this step was written", file=sys.stderr)
        return 130
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
