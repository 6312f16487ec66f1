"""The experiment's steps as functions of paths and options: pretrain, finetune, evaluate, London baseline.
The CLI and the demo both call these; nothing here parses arguments or prints tables."""

from __future__ import annotations

import os
import signal
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from . import FactlabError, checkpoint, formats, state
from .data import (MIX_SPAN_SHARE, VALIDATION_QUESTIONS, VALIDATION_SEED, CharCorruptionDataset, NameDataset,
                   QuestionMixture, parse_questions, question_lines, validation_split)
from .decode import Scored
from .evaluate import Abstention, Score, abstain, london_baseline, score, write_predictions
from .formats import DIRECT, AnswerFormat, checkpoint_format
from .io import make_parent, read_text, write_text_atomic
from .model import GPT, GPTConfig
from .recipes import COURSE, DATA_SETTINGS, ModelOptions, Training, course_stage, train_config
from .train import Checkpointing, TrainConfig, TrainResult, ranks, resolve_device, train


def pretraining_dataset(corpus_path, block_size: int, objective: str = "span",
                        span_share: float = MIX_SPAN_SHARE, salient_share: float = 0.0) -> CharCorruptionDataset:
    return CharCorruptionDataset(read_text(corpus_path), block_size, source=str(corpus_path), objective=objective,
                                 span_share=span_share, salient_share=salient_share)


def check_output_path(path) -> None:
    """Fail before any work if an output cannot be written there (not after hours of training): its folder is
    created, and a file is made and removed in it."""
    path = Path(path)
    if path.is_dir():
        raise FactlabError(f"{path}: is a directory; give a file path to write")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise FactlabError(f"{path}: {parent} is not a directory")
    make_parent(path)
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise FactlabError(f"{path}: cannot write in {parent} ({err.strerror})") from None


class RunInterrupted(FactlabError):
    """A signal stopped training; the checkpoint and the training state were saved. Not an error: the CLI prints
    the message and exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, signal_name: str):
        super().__init__(message)
        self.exit_status = 128 + int(getattr(signal, signal_name, signal.SIGTERM))


@dataclass(frozen=True)
class RunControl:
    """How a training run saves and resumes: not part of what it computes."""
    resume: bool = False
    save_every_minutes: float = 10.0
    tensorboard_dir: str | None = None  # also write the per-step metrics as TensorBoard scalars here

    def __post_init__(self):
        if not self.save_every_minutes > 0:
            raise FactlabError(f"--save_every_minutes {self.save_every_minutes}: must be a positive number of "
                               "minutes")


def load_model(params_path, variant: str, corpus_path, options: ModelOptions) -> tuple[GPT, CharCorruptionDataset]:
    header = checkpoint.read_config(params_path)
    wanted = options.config(variant, 0, header[0] if header else None)
    corpus = pretraining_dataset(corpus_path, wanted.block_size)
    model, _ = checkpoint.load(params_path, replace(wanted, vocab_size=corpus.vocab_size), corpus.vocab)
    return model, corpus


def pretrain(variant: str, corpus_path, writing_params_path, options: ModelOptions,
             training: Training = Training(), seed: int = 0, device: str = "auto",
             control: RunControl = RunControl(), questions_path=None) -> TrainResult:
    """`training` is layered over the course's pretraining settings (recipes.COURSE). Its objective says how
    each document is drawn (data.OBJECTIVES; span_share weighs "mix", salient_share masks salient spans); with
    a question_share above 0 the questions of `questions_path` (in the course's answer format) make that share of
    every epoch
    (data.QuestionMixture), and the cosine's epochs are epochs of that mixture."""
    check_output_path(writing_params_path)
    settings = COURSE["pretrain"].overridden_by(training)
    config = options.config(variant, 0)
    if settings.span_share is not None and settings.objective != "mix":
        raise FactlabError(f"span_share {settings.span_share}: applies to the objective mix only, not "
                           f"{settings.objective}")
    span_share = MIX_SPAN_SHARE if settings.span_share is None else settings.span_share
    salient_share = settings.salient_share or 0.0
    corpus = pretraining_dataset(corpus_path, config.block_size, settings.objective, span_share, salient_share)
    config = replace(config, vocab_size=corpus.vocab_size)
    data = {"corpus": state.fingerprint(corpus_path), "objective": settings.objective,
            **({"span_share": span_share} if settings.objective == "mix" else {}),
            **({"salient_share": salient_share} if salient_share else {})}
    examples = corpus
    if settings.question_share > 0:
        if questions_path is None:
            raise FactlabError(f"question_share {settings.question_share}: needs the questions to mix in "
                               "(--mix_questions)")
        questions = NameDataset(corpus, read_text(questions_path), source=str(questions_path),
                                drop_non_ascii=settings.non_ascii == "drop")
        examples = QuestionMixture(corpus, questions, settings.question_share)
        data.update(questions=state.fingerprint(questions_path), question_share=settings.question_share,
                    non_ascii=settings.non_ascii)
    torch.manual_seed(seed)
    model = GPT(config)
    tconf = train_config("pretrain", training, len(examples), config.block_size, seed, device)
    return _train_and_save(model, corpus, examples, tconf, writing_params_path, "pretrain", control, data)


def finetune(variant: str, corpus_path, finetune_corpus_path, writing_params_path, options: ModelOptions,
             reading_params_path=None, training: Training = Training(), seed: int = 0, device: str = "auto",
             answer_format: str = DIRECT.name, control: RunControl = RunControl()) -> TrainResult:
    """`training` is layered over the course's finetuning settings (recipes.COURSE: "finetune" from a pretrained
    model, "scratch" without one); its non_ascii says whether the questions' non-ASCII characters are dropped,
    as the course's NameDataset does."""
    check_output_path(writing_params_path)
    fmt = formats.answer_format(answer_format)  # an unknown name fails here, before any work
    torch.manual_seed(seed)
    if reading_params_path is not None:
        model, corpus = load_model(reading_params_path, variant, corpus_path, options)
    else:
        config = options.config(variant, 0)
        corpus = pretraining_dataset(corpus_path, config.block_size)
        model = GPT(replace(config, vocab_size=corpus.vocab_size))
    stage = "scratch" if reading_params_path is None else "finetune"
    drop_non_ascii = course_stage(stage).overridden_by(training).non_ascii == "drop"
    questions = fmt.training_examples(corpus, read_text(finetune_corpus_path), str(finetune_corpus_path),
                                      drop_non_ascii)
    tconf = train_config(stage, training, len(corpus), model.config.block_size, seed, device)
    data = {"corpus": state.fingerprint(corpus_path), "questions": state.fingerprint(finetune_corpus_path),
            "start": None if reading_params_path is None else state.fingerprint(reading_params_path),
            "answer_format": answer_format, "drop_non_ascii": drop_non_ascii}
    return _train_and_save(model, corpus, questions, tconf, writing_params_path, "finetune", control, data)


def data_info(data: dict) -> dict:
    """What a checkpoint's info says of the data it trained on, from the run's identity data: a finetuning's
    answer format (how its model answers) and what it did with the questions' non-ASCII characters, a
    pretraining's objective and shares (`analyze` counts exposures by them)."""
    if "answer_format" in data:
        return {"answer_format": data["answer_format"], "non_ascii": "drop" if data["drop_non_ascii"] else "keep"}
    return {"pretraining": {k: v for k, v in data.items() if k in DATA_SETTINGS}}


def _train_and_save(model, corpus, dataset, tconf: TrainConfig, writing_params_path, stage: str,
                    control: RunControl, data: dict) -> TrainResult:
    """Train, then write the checkpoint with its metrics; the training state is kept only while the run is
    unfinished (a signal stopped it, or it failed), and removed once the final checkpoint is written."""
    state_file = state.state_path(writing_params_path)
    metrics_path = f"{writing_params_path}.metrics.jsonl"
    identity = {"stage": stage, "model": model.config.to_dict(), "train": asdict(tconf), "data": data}
    board = TensorBoard(control.tensorboard_dir, control.resume) if control.tensorboard_dir and ranks().is_main \
        else None
    try:
        result = train(model, dataset, tconf, metrics_path=metrics_path,
                       checkpointing=Checkpointing(state_file, control.save_every_minutes, control.resume, identity),
                       on_step=board.record if board else None)
    finally:
        if board:
            board.close()
    if ranks().is_main:  # under torchrun every rank ends with the same weights; one writes them
        info = {"stage": stage, "train": asdict(tconf), "result": result.to_dict(), **data_info(data)}
        checkpoint.save(writing_params_path, model, corpus.vocab, info)
        state.publish_metrics(metrics_path)
        if result.interrupted is None:
            state.remove(state_file)
    if result.interrupted is not None:
        raise RunInterrupted(f"{stage} stopped by {result.interrupted} after step {result.steps} "
                             f"({result.epochs_done} epochs): saved {writing_params_path} and its training state "
                             f"{state_file}; run the same command with --resume to continue", result.interrupted)
    return result


def snapshot(state_file, corpus_path, writing_params_path) -> dict:
    """The model of a run in progress, from its training state (PARAMS.state), written as a checkpoint that
    evaluate, analyze, ask and report read; the state is only read, so the run goes on undisturbed. The
    checkpoint's info is the stage's, with `snapshot` saying how far the run was (the epoch it is in, and the
    batches of it taken); `result.epochs_done` counts the epochs before that one. Returns that info."""
    check_output_path(writing_params_path)
    if not Path(state_file).is_file():  # state.load's message for this one speaks of resuming
        raise FactlabError(f"{state_file}: no such training state (a run keeps PARAMS.state while it trains, and "
                           "removes it when it finishes)")
    saved = state.load(state_file)
    identity = saved["identity"]
    if state.fingerprint(corpus_path) != identity["data"]["corpus"]:
        raise FactlabError(f"{corpus_path}: not the corpus the run of {state_file} trains on (its vocabulary and "
                           "documents differ)")
    config = GPTConfig.from_dict(identity["model"])
    corpus = pretraining_dataset(corpus_path, config.block_size)
    model = GPT(config)
    model.load_state_dict(saved["model"])
    info = {"stage": identity["stage"], "train": identity["train"],
            "result": {"steps": saved["steps"], "epochs_done": saved["epoch"] - 1, "tokens": saved["tokens"],
                       "seconds": saved["elapsed"], "final_loss": saved["loss"]},
            "snapshot": {"state": Path(state_file).name, "step": saved["steps"], "epoch": saved["epoch"],
                         "batches_of_epoch": saved["batches"]}, **data_info(identity["data"])}
    checkpoint.save(writing_params_path, model, corpus.vocab, info)
    return info


class TensorBoard:
    """The per-step metrics as TensorBoard scalars (torch.utils.tensorboard), the course's habit
    (`tensorboard --logdir expt/`); the JSONL file stays the record."""

    def __init__(self, logdir: str, resume: bool):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise FactlabError('--tb_expt_name: TensorBoard is not installed (pip install -e ".[tensorboard]")'
                               ) from None
        self.writer, self.resume, self.logdir = SummaryWriter, resume, logdir
        self.opened = None

    def record(self, m: dict) -> None:
        if self.opened is None:  # a resumed run drops the events of the steps it takes again
            self.opened = self.writer(log_dir=self.logdir, purge_step=m["step"] if self.resume else None)
        for name in ("loss", "lr", "tokens"):
            self.opened.add_scalar(f"train/{name}", m[name], m["step"])
        self.opened.add_scalar("train/tokens_per_s", m["tokens"] / max(m["elapsed_s"], 1e-9), m["step"])

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()


def checkpoint_variant(params_path) -> str:
    """The attention variant a checkpoint was trained with: from its metadata, or from a course file's weights."""
    header = checkpoint.read_config(params_path)
    if header is not None:
        return header[0].variant
    state = checkpoint.load_course_params(Path(params_path))
    return checkpoint.config_from_course_state(state, GPTConfig(vocab_size=1, block_size=128)).variant


@dataclass(frozen=True)
class Evaluation:
    predictions: list[str]
    score: Score | None  # None for a file without answers; with abstention, abstentions count as wrong
    scored: list[Scored] | None = None  # the greedy answers with their probabilities, when they were asked for
    abstention: Abstention | None = None
    recitations: list[str] | None = None  # what a "recite" model wrote before each answer


def read_questions(eval_corpus_path, require_answers: bool = False):
    """The questions as written, non-ASCII characters included, as the course's evaluation reads them."""
    return parse_questions(read_text(eval_corpus_path), str(eval_corpus_path), require_answers=require_answers)


def answer(model: GPT, vocab, questions, device: str = "auto", with_scores: bool = False,
           answer_format: AnswerFormat = DIRECT) -> tuple[list, list[str] | None]:
    """Greedy answers (or `Scored` answers) to parsed questions in `answer_format`, and the recitations (None
    for a format without them); a question the model cannot read is an error."""
    prompts = [answer_format.prompt(vocab, q.question, q.where, model.config.block_size) for q in questions]
    model.to(resolve_device(device))
    decoded = answer_format.decode(model, vocab, prompts, with_scores=with_scores)
    return decoded.answers, decoded.recitations


def evaluate(variant: str, corpus_path, reading_params_path, eval_corpus_path, options: ModelOptions,
             outputs_path=None, device: str = "auto", abstain_below: float | None = None,
             with_scores: bool = False) -> Evaluation:
    """Greedy answers to a question file, scored, in the checkpoint's answer format; `with_scores` keeps each
    answer's probability too (Evaluation.scored: the same answers, for an analysis). With `abstain_below`,
    answers whose probability (`Scored.prob`: of the answer characters and closing ⁇, or for a recite model of
    the place recited and answered) is below it become "unknown" and count as wrong.
    A "recite" model's recitations are written beside the predictions (OUTPUTS.recitations, one a line, a
    newline in one written as \\n)."""
    if outputs_path is not None:
        check_output_path(outputs_path)
    if abstain_below is not None and not 0.0 <= abstain_below <= 1.0:
        raise FactlabError(f"--abstain_below {abstain_below}: a probability threshold must be in [0, 1]")
    model, corpus = load_model(reading_params_path, variant, corpus_path, options)
    questions = read_questions(eval_corpus_path)
    fmt = checkpoint_format(reading_params_path)
    scoring = with_scores or abstain_below is not None
    decoded, recitations = answer(model, corpus.vocab, questions, device, with_scores=scoring, answer_format=fmt)
    scored = decoded if scoring else None
    if abstain_below is None:
        predictions = [s.answer for s in decoded] if scoring else decoded
        abstention, result = None, score(questions, predictions)
    else:
        predictions, abstention = abstain(questions, [s.answer for s in scored], [s.prob for s in scored],
                                          abstain_below)
        result = abstention.score
    if outputs_path is not None:
        write_predictions(outputs_path, predictions)
        if recitations is not None:
            write_predictions(f"{outputs_path}.recitations", [r.replace("\n", "\\n") for r in recitations])
    return Evaluation(predictions, result, scored, abstention, recitations)


def split(questions_path, out_dir, n: int = VALIDATION_QUESTIONS, seed: int = VALIDATION_SEED
          ) -> tuple[Path, Path]:
    """Write OUT_DIR/train.tsv (the questions to finetune on) and OUT_DIR/validation.tsv (the n held out)."""
    out = Path(out_dir)
    train, held_out = validation_split(read_questions(questions_path, require_answers=True), n, seed,
                                       str(questions_path))
    paths = out / "train.tsv", out / "validation.tsv"
    for path, part in zip(paths, (train, held_out)):
        check_output_path(path)
        write_text_atomic(path, question_lines(part))
    return paths


def london(eval_corpus_path, outputs_path=None) -> Evaluation:
    if outputs_path is not None:
        check_output_path(outputs_path)
    questions = parse_questions(read_text(eval_corpus_path), str(eval_corpus_path), require_answers=False)
    predictions = london_baseline(questions)
    if outputs_path is not None:
        write_predictions(outputs_path, predictions)
    return Evaluation(predictions, score(questions, predictions))
