"""Recipes: the home of every hyperparameter. A recipe names a model size and the settings of its three
trainings (pretraining, finetuning a pretrained model, finetuning from scratch), typed and checked when this
module is imported, so a misspelt option fails at once and not after hours of training.

The course's Trainer settings are the base every stage starts from (`COURSE`); a recipe's stage and the
command line's options are layers over it, resolved the same way for `factlab pretrain`/`finetune` and for
`factlab reproduce`: course, then the recipe, then what the command line gives.

Measured results of the recipes are in docs/recipes.md, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from . import FactlabError
from .data import BATCHINGS, NON_ASCII, OBJECTIVES
from .formats import FORMATS
from .model import SYNTHESIZER_B, GPTConfig
from .train import DECAY_GROUPS, LR_SCHEDULES, PRECISIONS, TrainConfig

STAGES = ("pretrain", "finetune", "scratch")  # finetune: from a pretrained model; scratch: without pretraining
# A recipe's trainings: the three stages, and the teacher of a distilling recipe, a finetuning (distill.py).
RECIPE_STAGES = STAGES + ("teacher",)


def _check(owner: str, name: str, value, kind, positive: bool = False) -> None:
    """One line for a setting of the wrong type or sign: numbers must be positive, or else at least 0."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise FactlabError(f"{owner} {name}={value!r}: must be {kind.__name__}")
    if kind in (int, float) and not (value > 0 if positive else value >= 0):
        raise FactlabError(f"{owner} {name}={value!r}: must be {'positive' if positive else 'at least 0'}")


def _model_type(name: str) -> tuple[type, bool]:
    """A model option's type and whether it must be positive: dropout is a float that may be 0, synthesizer_b
    a choice, the rest positive integers."""
    return {"dropout": (float, False), "synthesizer_b": (str, False)}.get(name, (int, True))


@dataclass(frozen=True)
class ModelOptions:
    """Model sizes; None means "the checkpoint's, else the course's default"."""
    block_size: int | None = None
    n_layer: int | None = None
    n_head: int | None = None
    n_embd: int | None = None
    bottleneck_dim: int | None = None
    dropout: float | None = None
    synthesizer_b: str | None = None  # "shared" (the course's code) or "per-head" (the handout's formula)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                _check("model option", f.name, value, *_model_type(f.name))
        if self.synthesizer_b is not None and self.synthesizer_b not in SYNTHESIZER_B:
            raise FactlabError(f"model option synthesizer_b={self.synthesizer_b!r}: unknown "
                               f"(known: {', '.join(SYNTHESIZER_B)})")

    def overridden_by(self, other: ModelOptions) -> ModelOptions:
        """These options with every value `other` sets replacing ours."""
        return replace(self, **{f.name: getattr(other, f.name) for f in fields(other)
                                if getattr(other, f.name) is not None})

    def config(self, variant: str, vocab_size: int, base: GPTConfig | None = None) -> GPTConfig:
        base = base or GPTConfig(vocab_size=vocab_size, block_size=128, variant=variant)
        asked = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        try:
            return replace(base, variant=variant, vocab_size=vocab_size, **asked)
        except ValueError as err:
            raise FactlabError(f"model options: {err}") from None


# The type of each training setting, and whether it must be positive (else at least 0); the names are TrainConfig's, plus
# decay_epochs (the cosine's span in epochs of the pretraining corpus, used when final_tokens is not given).
_TRAINING_TYPES = {"max_epochs": (int, True), "batch_size": (int, True), "learning_rate": (float, True),
                   "warmup_tokens": (int, False), "final_tokens": (int, True), "decay_epochs": (int, True),
                   "weight_decay": (float, False), "max_minutes": (float, False), "max_steps": (int, True),
                   "precision": (str, False), "compile": (bool, False), "lr_schedule": (str, False),
                   "weight_decay_groups": (str, False), "replay_rates": (str, False),
                   "objective": (str, False), "question_share": (float, False), "span_share": (float, True),
                   "salient_share": (float, False),
                   "batching": (str, False), "micro_batch": (int, True), "non_ascii": (str, False)}
_CHOICES = {"precision": PRECISIONS, "lr_schedule": LR_SCHEDULES, "weight_decay_groups": DECAY_GROUPS,
            "objective": OBJECTIVES, "batching": BATCHINGS, "non_ascii": NON_ASCII}
# Settings of what a stage reads rather than of the trainer (experiment.pretrain and finetune apply them).
DATA_SETTINGS = ("objective", "question_share", "span_share", "salient_share", "non_ascii")


@dataclass(frozen=True)
class Training:
    """One training stage's settings. None means "not set at this layer": the layer below decides."""
    max_epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    warmup_tokens: int | None = None
    final_tokens: int | None = None
    decay_epochs: int | None = None
    weight_decay: float | None = None
    max_minutes: float | None = None
    max_steps: int | None = None
    precision: str | None = None
    compile: bool | None = None
    lr_schedule: str | None = None
    weight_decay_groups: str | None = None
    replay_rates: str | None = None
    objective: str | None = None  # pretraining: "span" (the course's), "lm" or "mix" (data.OBJECTIVES)
    question_share: float | None = None  # pretraining: the share of each epoch that is training questions
    span_share: float | None = None  # pretraining with objective "mix": the chance a draw is span corruption
    salient_share: float | None = None  # the chance a span-corruption draw masks a salient span (data.py)
    batching: str | None = None  # "course" (file order) or "length" (data.epoch_batches)
    micro_batch: int | None = None  # rows per forward/backward pass; the same gradient (train.TrainConfig)
    non_ascii: str | None = None  # the question files' non-ASCII characters: "drop" (the course's) or "keep"

    def __post_init__(self):
        for name, (kind, positive) in _TRAINING_TYPES.items():
            value = getattr(self, name)
            if value is None:
                continue
            _check("training option", name, value, kind, positive)
            if name in _CHOICES and value not in _CHOICES[name]:
                raise FactlabError(f"training option {name}={value!r}: unknown (known: {', '.join(_CHOICES[name])})")
        if self.question_share is not None and not self.question_share < 1:
            raise FactlabError(f"training option question_share={self.question_share!r}: must be below 1")
        if self.span_share is not None and not self.span_share < 1:
            raise FactlabError(f"training option span_share={self.span_share!r}: must be below 1")
        if self.salient_share is not None and not self.salient_share <= 1:
            raise FactlabError(f"training option salient_share={self.salient_share!r}: must be at most 1")

    def overridden_by(self, other: Training) -> Training:
        return replace(self, **self._set(other))

    @staticmethod
    def _set(t: Training) -> dict:
        return {f.name: getattr(t, f.name) for f in fields(t) if getattr(t, f.name) is not None}

    def train_config(self, n_documents: int, block_size: int, seed: int, device: str) -> TrainConfig:
        """The trainer's config: final_tokens, unless given, is decay_epochs × the pretraining corpus's documents ×
        block_size, the course's formula for both of its stages (so its finetuning rate barely decays)."""
        values = {k: v for k, v in self._set(self).items() if k not in DATA_SETTINGS}
        decay_epochs = values.pop("decay_epochs", None)
        if "final_tokens" not in values:
            values["final_tokens"] = decay_epochs * n_documents * block_size
        return TrainConfig(seed=seed, device=device, **values)


# The course's run.py and Trainer: 650 pretraining epochs at batch 128 and lr 6e-3 with the cosine over the first
# 200 epochs' tokens, span corruption of every document once an epoch; finetuning at batch 256 and lr 6e-4, 10
# epochs after pretraining or 75 without, on questions whose non-ASCII characters its NameDataset drops.
COURSE = {
    "pretrain": Training(max_epochs=650, batch_size=128, learning_rate=6e-3, decay_epochs=200, objective="span",
                         question_share=0.0, non_ascii="drop"),
    "finetune": Training(max_epochs=10, batch_size=256, learning_rate=6e-4, decay_epochs=200, non_ascii="drop"),
    "scratch": Training(max_epochs=75, batch_size=256, learning_rate=6e-4, decay_epochs=200, non_ascii="drop"),
}


def course_stage(stage: str) -> Training:
    """The course's settings a recipe's training is layered over: a teacher's are the course's finetuning."""
    return COURSE["finetune" if stage == "teacher" else stage]


def train_config(stage: str, asked: Training, n_documents: int, block_size: int, seed: int = 0,
                 device: str = "cpu") -> TrainConfig:
    """The stage's trainer config: the course's settings with those `asked` (a recipe's, the command line's)."""
    return course_stage(stage).overridden_by(asked).train_config(n_documents, block_size, seed, device)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str  # what it is; measured results live in docs/recipes.md
    model: ModelOptions = ModelOptions()
    pretrain: Training = Training()  # layers over COURSE's stages
    finetune: Training = Training()
    scratch: Training = Training()
    answer_format: str = "direct"  # of the finetuning after pretraining (formats.py)
    # Self-distillation (distill.py): with a teacher format, a teacher finetuned from the pretrained model in that
    # format (with the `teacher` settings, layered over COURSE's finetuning) labels every other person of the
    # corpus, and the finetuning learns those labels besides the training questions.
    teacher_format: str | None = None
    teacher: Training = Training()

    def __post_init__(self):
        for name in ("answer_format", "teacher_format"):
            value = getattr(self, name)
            if value not in FORMATS and (value is not None or name == "answer_format"):
                raise FactlabError(f"recipe {self.name}: {name} {value!r}: unknown (known: {', '.join(FORMATS)})")

    def stage(self, name: str) -> Training:
        return getattr(self, name)

    def resolved(self, stage: str, model: ModelOptions = ModelOptions(), training: Training = Training()
                 ) -> tuple[ModelOptions, Training]:
        """The model and the stage's training under this recipe with what the command line sets on top: the one
        resolution the CLI and `factlab reproduce` share."""
        return self.model.overridden_by(model), self.stage(stage).overridden_by(training)


# factlab's own trainer choices (train.py), which the CPU recipes and the demo use: their documented numbers
# were measured with them, and with the question files' non-ASCII characters kept. Their precision is the
# trainer's "auto": fp32 on a CPU, bf16 autocast on a GPU.
FACTLAB_TRAINER = Training(lr_schedule="floor", weight_decay_groups="matmul", batching="length", non_ascii="keep")
# The course's code computes in fp32, on a GPU too: the course recipe's every stage says so (bf16 is `--precision
# bf16`; the one 650-epoch GPU run in bf16 collapsed where the course's fp32 loop did not, docs/course-runs.md).
COURSE_PRECISION = Training(precision="fp32")

# A 128-wide model that fits an hour on 2 CPU cores: pretraining stops at 54 minutes, the cosine following the
# clock when the machine is slower than planned.
_CPU_MODEL = ModelOptions(n_layer=4, n_head=4, n_embd=128, dropout=0.0)
_CPU_PRETRAIN = FACTLAB_TRAINER.overridden_by(Training(max_epochs=350, decay_epochs=350, max_minutes=54,
                                                       batch_size=64, learning_rate=4e-3, weight_decay=0.3))
_CPU_SCRATCH = FACTLAB_TRAINER.overridden_by(Training(max_epochs=75, batch_size=256, learning_rate=6e-4))

RECIPES = {
    "course": Recipe("course", "the assignment's model, hyperparameters and Trainer (its unclamped cosine, its "
                     "weight-decay groups and fp32, a GPU's included; 650 pretraining epochs)",
                     pretrain=COURSE_PRECISION, finetune=COURSE_PRECISION, scratch=COURSE_PRECISION),
    "cpu-fast": Recipe(
        "cpu-fast", "4 layers, 4 heads, 128 dims, no dropout, factlab's trainer options; pretraining at batch 64, "
        "lr 4e-3, weight decay 0.3, the cosine over 350 epochs or 54 minutes, whichever ends first; finetuning at "
        "lr 3e-4 in the course's answer format",
        model=_CPU_MODEL, pretrain=_CPU_PRETRAIN, scratch=_CPU_SCRATCH,
        finetune=FACTLAB_TRAINER.overridden_by(Training(max_epochs=10, batch_size=256, learning_rate=3e-4))),
    "cpu-recite": Recipe(
        "cpu-recite", "cpu-fast's model and pretraining, then finetuning to answer by recitation (NAME. + the "
        "biography up to the place + ⁇place⁇) at lr 1e-4 for 10 epochs",
        model=_CPU_MODEL, pretrain=_CPU_PRETRAIN, scratch=_CPU_SCRATCH, answer_format="recite",
        finetune=FACTLAB_TRAINER.overridden_by(Training(max_epochs=10, batch_size=256, learning_rate=1e-4))),
}
# The selected recipes: each setting chosen on the validation split (400 training questions held out; levers in
# docs/selection.md), dev scored once per final run.
RECIPES["cpu-best"] = replace(
    RECIPES["cpu-recite"], name="cpu-best",
    pretrain=RECIPES["cpu-recite"].pretrain.overridden_by(Training(objective="mix")),
    description="the best closed-book recipe on the validation split (57.8%): cpu-recite with the mix objective "
    "(each pretraining draw span corruption or language modelling from position 0, evenly), recitation "
    "finetuning at lr 1e-4; docs/cpu-best.md")
RECIPES["cpu-distill"] = replace(
    RECIPES["cpu-best"], name="cpu-distill", answer_format="direct", teacher_format="recite",
    teacher=RECIPES["cpu-best"].finetune,
    finetune=RECIPES["cpu-best"].finetune.overridden_by(Training(learning_rate=3e-4)),
    description="cpu-best's pretraining, then self-distillation into the course's answer format: cpu-best's "
    "recitation finetuning makes a teacher, the teacher answers for every other person of wiki.txt, and the "
    "pretrained model finetunes in the course's format on the training questions and those answers at lr 3e-4 "
    "for 10 epochs (distill.py; docs/distillation.md)")
RECIPES["cpu-direct"] = replace(
    RECIPES["cpu-distill"], name="cpu-direct",
    finetune=RECIPES["cpu-distill"].finetune.overridden_by(Training(max_epochs=20)),
    description="the best recipe in the course's answer format on the validation split (52.2%): cpu-distill "
    "with 20 epochs of the student's finetuning (docs/distillation.md, docs/cpu-best.md)")


def demo_recipe(name: str, n_documents: int, model: ModelOptions, pretrain: Training, finetune: Training,
                scratch_epochs: int) -> Recipe:
    # The cosine spans the whole run (the course's final_tokens covers only 200 of its 650 epochs). Finetuning
    # without pretraining has more to learn, so it runs longer, as in the course (75 vs 10 epochs).
    # factlab's schedule and decay groups, as when the demo's settings were chosen.
    final_tokens = pretrain.max_epochs * n_documents * (model.block_size - 1)
    finetune = FACTLAB_TRAINER.overridden_by(finetune)
    return Recipe(name, "factlab demo", model,
                  FACTLAB_TRAINER.overridden_by(pretrain).overridden_by(Training(final_tokens=final_tokens)),
                  finetune, finetune.overridden_by(Training(max_epochs=scratch_epochs)))


# The demo's, for the synthetic corpus (its numbers of documents are the demo's corpus sizes), chosen on the
# synthetic dev set of seed 0 (docs/results.md): 300 people need about 300 passes over their biographies before
# a 4-layer, 128-wide model recalls their birthplaces; finetuning stays short, since ~200 questions teach the
# question format but are memorised instead if training goes on.
DEMO = demo_recipe("demo", 300, ModelOptions(block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
                   pretrain=Training(max_epochs=300, batch_size=16, learning_rate=2e-3),
                   finetune=Training(max_epochs=4, batch_size=32, learning_rate=6e-4), scratch_epochs=20)
DEMO_QUICK = demo_recipe("demo-quick", 200, ModelOptions(block_size=128, n_layer=2, n_head=2, n_embd=64,
                                                         dropout=0.0),  # for the tests: smaller and shorter
                         pretrain=Training(max_epochs=10, batch_size=32, learning_rate=2e-3),
                         finetune=Training(max_epochs=2, batch_size=32, learning_rate=6e-4), scratch_epochs=2)


def recipe(name: str | None) -> Recipe:
    """A recipe by name; None is the course's."""
    name = name or "course"
    if name not in RECIPES:
        raise FactlabError(f"--recipe {name}: unknown recipe (known: {', '.join(RECIPES)})")
    return RECIPES[name]


def overridden(chosen: Recipe, assignments: list[str]) -> Recipe:
    """The recipe with `STAGE.NAME=VALUE` assignments applied (STAGE: model, pretrain, finetune, scratch,
    teacher; or answer_format=VALUE, teacher_format=VALUE): a reproduction that changes one setting of a recipe,
    typed and checked as recipes are. The name says what changed."""
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        stage, dot, name = key.partition(".")
        if key in ("answer_format", "teacher_format") and sep:
            chosen = replace(chosen, **{key: text})
            continue
        target = (chosen.model if stage == "model" else getattr(chosen, stage) if stage in RECIPE_STAGES
                  else None)
        names = {f.name: f for f in fields(target)} if target is not None else {}
        if not sep or not dot or name not in names:
            raise FactlabError(f"--override {assignment}: expected STAGE.NAME=VALUE with STAGE one of model, "
                               f"{', '.join(RECIPE_STAGES)} and NAME one of its settings, or answer_format=VALUE "
                               "or teacher_format=VALUE")
        kind = (_model_type(name) if stage == "model" else _TRAINING_TYPES[name])[0]
        try:
            value = {bool: lambda t: {"true": True, "false": False}[t.lower()]}.get(kind, kind)(text)
        except (ValueError, KeyError):
            raise FactlabError(f"--override {assignment}: {text!r} is not of type {kind.__name__}") from None
        layer = type(target)(**{name: value})
        chosen = replace(chosen, **{stage: target.overridden_by(layer)})
    return replace(chosen, name=chosen.name + "".join(f" {a}" for a in assignments)) if assignments else chosen
