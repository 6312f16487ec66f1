"""Self-distillation: a model that can say what it knows in one format teaches another format to say it.

A model finetuned to answer by recitation (formats.py) reaches the birthplaces it memorised in pretraining; one
finetuned in the course's format (`Where was NAME born?⁇place⁇`) on the 2,000 training questions mostly does
not, though both start from the same pretrained model (docs/selection.md). Distillation asks the recitation
model (the teacher) where every person of the pretraining corpus was born, and finetunes the same pretrained
model in the course's format on the training questions together with those answers (`label_corpus`).

What it reads: the pretraining corpus's titles (data.corpus_names), the training questions and the teacher's
own answers. Never an answer of dev, the test inputs or a validation split: the people of those files are in the
corpus, as they are in the course's pretraining, so their names are among those the teacher labels, and the
labels are what the teacher says, right or wrong. At inference the finetuned model reads only the question.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import FactlabError, experiment
from .data import Question, corpus_names, question_lines, question_name
from .formats import checkpoint_format
from .io import read_text, write_text_atomic
from .recipes import ModelOptions
from .vocab import MASK_CHAR, PAD_CHAR


@dataclass(frozen=True)
class Labelled:
    """What `label_corpus` wrote: the training questions, then the corpus people the teacher answered."""
    questions: int  # training questions, with their own answers
    people: int  # corpus people not among the training questions, each asked
    labelled: int  # those the teacher gave an answer that can be a label (not empty, one line)

    def __str__(self) -> str:
        return (f"{self.questions} questions and {self.labelled} of {self.people} other people of the corpus, "
                "labelled by the teacher")


def usable_label(answer: str) -> bool:
    """An answer that can stand in a question<TAB>answer file: something to learn, on one line."""
    return bool(answer.strip()) and not any(c in answer for c in ("\t", "\n", "\r", PAD_CHAR, MASK_CHAR))


def label_corpus(teacher_params, variant: str, corpus_path, questions_path, outputs_path,
                 options: ModelOptions = ModelOptions(), device: str = "auto") -> Labelled:
    """Write OUTPUTS (question<TAB>answer): the training questions of QUESTIONS as they are, then "Where was NAME
    born?" for every person of the corpus whose name none of them asks about, answered greedily by the teacher
    in the format it was finetuned in. Answers that cannot be a label are left out and counted."""
    experiment.check_output_path(outputs_path)
    model, corpus = experiment.load_model(teacher_params, variant, corpus_path, options)
    questions = experiment.read_questions(questions_path, require_answers=True)
    asked = {question_name(q.question) for q in questions}
    people = [Question(f"Where was {name} born?", None, f"{corpus_path}: the person {name!r}")
              for name in corpus_names(read_text(corpus_path)) if name not in asked]
    if not people:
        raise FactlabError(f"{corpus_path}: every person of the corpus is asked about in {questions_path}; "
                           "there is no one to label")
    answers, _ = experiment.answer(model, corpus.vocab, people, device,
                                   answer_format=checkpoint_format(teacher_params))
    labelled = [Question(q.question, a.strip(), q.where) for q, a in zip(people, answers) if usable_label(a)]
    write_text_atomic(outputs_path, question_lines(questions + labelled))
    return Labelled(len(questions), len(people), len(labelled))
