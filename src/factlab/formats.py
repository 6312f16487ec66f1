"""Answer formats: how a finetuned model answers "Where was NAME born?". The home of everything a format decides.

- **direct** (the course's): the model reads `Where was NAME born?⁇` and writes `place⁇`; it is finetuned on
  data.NameDataset.
- **recite**: the model reads `NAME.`, the opening of NAME's biography exactly where pretraining saw it, writes
  the biography it memorised up to the birthplace, then `⁇place⁇`; it is finetuned on `RecitationDataset`.
- **recite-marked**: the same recitation, but the place is written once, inside it and between two ⁇
  (`… born in ⁇place⁇`), so nothing has to be copied after the recitation (`MarkedRecitationDataset`). A model
  pretrained by language modelling never saw ⁇ and never learned span corruption's copying; this format asks
  it only to mark the place it recites. Its recitation (what the analysis searches for the gold place) is the
  text before the first ⁇, so it holds the place only when the biography names it earlier.

A format (`AnswerFormat`) says which finetuning examples teach it (`training_examples`), what the model reads
for a question (`prompt`), how its answers are decoded, with or without their confidence, together with the
recitations and what the model read before each answer (`decode`), and what that confidence is the probability
of (`confidence`). Commands look a format up by name (`answer_format`, `FORMATS`) or in a checkpoint, which
records its name as "answer_format" in its info (`checkpoint_format`), and ask it instead of branching on the
name. The generic machinery is elsewhere: batched greedy decoding in decode.py; file parsing, the corpus index
and the course's NameDataset in data.py (a course contract, so it stays there; RecitationDataset, factlab's own,
lives here and changes only its `texts`).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import FactlabError, checkpoint
from .data import CharCorruptionDataset, CorpusIndex, NameDataset, Question, question_name
from .decode import Scored, answer_questions, prompt_ids, token_logprobs
from .model import GPT
from .vocab import MASK_CHAR, MASK_ID, Vocab


@dataclass(frozen=True)
class Decoded:
    """A format's greedy answers to a batch of prompts."""
    answers: list  # str, or `Scored` when scores were asked for
    recitations: list[str] | None  # what the model wrote before each answer; None for a format without one
    read: list[list[int]]  # what the model had read when it wrote each answer: the prompt and any recitation


class AnswerFormat:
    """What a format decides; `DIRECT`, `RECITE` and `RECITE_MARKED` are the three there are."""
    name: str
    examples: type[NameDataset]  # the class of its finetuning examples
    prompt_words: str  # its prompt, in words, for errors
    read_words: str  # what the model has read when it answers, in words
    confidence: str  # what the probability of a `Scored` answer is the probability of, in words

    def training_examples(self, corpus: CharCorruptionDataset, text: str, source: str,
                          drop_non_ascii: bool = False) -> NameDataset:
        """The finetuning examples of a question<TAB>answer file's text."""
        return self.examples(corpus, text, source=source, drop_non_ascii=drop_non_ascii)

    def prompt(self, vocab: Vocab, question: str, where: str, block_size: int) -> list[int]:
        """What the model reads for a question; a prompt longer than the model's block is a one-line error
        naming `where`."""
        prompt = self.encode_prompt(vocab, question, where)
        if len(prompt) > block_size:
            raise FactlabError(f"{where}: {self.prompt_words} is {len(prompt)} characters; the model reads at most "
                               f"{block_size}")
        return prompt

    def encode_prompt(self, vocab: Vocab, question: str, where: str) -> list[int]:
        raise NotImplementedError

    def decode(self, model: GPT, vocab: Vocab, prompts: list[list[int]], with_scores: bool = False) -> Decoded:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<answer format {self.name}>"


class Direct(AnswerFormat):
    name = "direct"
    examples = NameDataset
    prompt_words = "the question with its ⁇"
    read_words = "question"
    confidence = "the answer and its closing ⁇"

    def encode_prompt(self, vocab: Vocab, question: str, where: str) -> list[int]:
        return prompt_ids(vocab, question, where)

    def decode(self, model: GPT, vocab: Vocab, prompts: list[list[int]], with_scores: bool = False) -> Decoded:
        return Decoded(answer_questions(model, vocab, prompts, with_scores=with_scores), None, prompts)


class Recite(AnswerFormat):
    name = "recite"
    prompt_words = "the prompt NAME."
    read_words = "biography the model recited after NAME."
    confidence = "the place written in the recitation and as the answer"
    @property
    def examples(self) -> type[NameDataset]:
        return RecitationDataset  # defined below, with the rest of what reciting takes

    def encode_prompt(self, vocab: Vocab, question: str, where: str) -> list[int]:
        return vocab.encode(recitation_prompt(question, where), where)

    def decode(self, model: GPT, vocab: Vocab, prompts: list[list[int]], with_scores: bool = False) -> Decoded:
        recitations, answers = recite_then_answer(model, vocab, prompts, with_scores=with_scores,
                                                  place_in_recitation=self.examples.place_in_recitation)
        return Decoded(answers, recitations, [answer_prompt(vocab, p, r) for p, r in zip(prompts, recitations)])


class ReciteMarked(Recite):
    name = "recite-marked"
    read_words = "biography the model recited after NAME., up to the place"
    confidence = "the place written between the recitation's two ⁇"

    @property
    def examples(self) -> type[NameDataset]:
        return MarkedRecitationDataset


# ---------------------------------------------------------------- reciting

MIN_ANSWER_ROOM = 16  # positions left for the answer after a cut recitation: the longest training place fits


def recitation_prompt(question: str, where: str) -> str:
    """`NAME.`, the opening of NAME's biography, for the question "Where was NAME born?"."""
    name = question_name(question)
    if name is None:
        raise FactlabError(f"{where}: answering by recitation needs questions of the form 'Where was NAME born?'")
    return name + "."


class RecitationDataset(NameDataset):
    """Finetuning to answer by recitation: x = `NAME.` + the person's biography up to the first mention of the
    place + `⁇place⁇`, loss on everything after `NAME.`.

    The prompt is the biography's own opening at position 0, exactly where pretraining saw it, so the model
    recites what it memorised and then names the place from its own recitation. People whose biography does not
    mention the place early enough to fit in the block learn `NAME.⁇place⁇` (no recitation)."""

    place_in_recitation = True  # the place ends the recitation and is written again after it

    def __init__(self, pretraining_dataset: CharCorruptionDataset, data: str, source: str = "questions",
                 drop_non_ascii: bool = False):
        self.index = CorpusIndex("\n".join(pretraining_dataset.data))
        super().__init__(pretraining_dataset, data, source, drop_non_ascii)

    def texts(self, q: Question) -> tuple[str, str]:
        prompt = recitation_prompt(q.question, q.where)
        # the whole example, `NAME.` + recitation + `⁇place⁇`, must fit in the block
        again = len(q.answer) if self.place_in_recitation else 0
        found = self.index.place_in_document(prompt[:-1], q.answer, self.block_size - again - 2)
        recited = found[0][len(prompt) : found[1] + again] if found else ""
        return prompt, recited + MASK_CHAR + q.answer + MASK_CHAR


class MarkedRecitationDataset(RecitationDataset):
    """The recite-marked format's examples: x = `NAME.` + the biography up to the place + `⁇place⁇`, the place
    written once, where the biography has it."""
    place_in_recitation = False


def recite_then_answer(model: GPT, vocab: Vocab, prompts: list[list[int]], with_scores: bool = False,
                       place_in_recitation: bool = True) -> tuple[list[str], list[str] | list[Scored]]:
    """Two greedy passes: the recitation (up to the first ⁇), then the answer after `prompt recitation ⁇`.
    Returns the recitations and the answers. A recitation that fills the block (it never closed) is cut to leave
    MIN_ANSWER_ROOM positions.

    With `with_scores`, `Scored` answers whose probability is that of writing the place twice: the recitation's
    last len(answer) characters (where a recitation names the place, as the model was finetuned to) times the
    answer and its ⁇ after the recitation. The second factor alone says little, since copying a place just
    written is easy whether or not the model knew it; the first says how sure the model was when it recalled it.
    The first-character probability stays the answer's. Without `place_in_recitation` (the recite-marked
    format, whose recitation stops where the place begins) the probability is the answer's alone: there it is
    the recall itself."""
    block = model.config.block_size
    recitations = answer_questions(model, vocab, prompts, max_chars=block)
    for i, (p, r) in enumerate(zip(prompts, recitations)):
        if len(p) + len(r) + 1 >= block:
            recitations[i] = r[: block - MIN_ANSWER_ROOM - len(p)]
    second = [answer_prompt(vocab, p, r) for p, r in zip(prompts, recitations)]
    answers = answer_questions(model, vocab, second, with_scores=with_scores)
    if not with_scores or not place_in_recitation:
        return recitations, answers
    recited = token_logprobs(model, [s[:-1] for s in second], [len(p) for p in prompts])
    scored = []
    for a, lps in zip(answers, recited):
        tail = lps[max(0, len(lps) - len(a.answer)):] if a.answer else []
        scored.append(Scored(a.answer, a.logprob + sum(tail), a.first_char_prob, a.closed))
    return recitations, scored


def answer_prompt(vocab: Vocab, prompt: list[int], recitation: str) -> list[int]:
    """What a recite model reads before its answer: `NAME.`, its recitation, then ⁇."""
    return prompt + vocab.encode(recitation) + [MASK_ID]


DIRECT, RECITE, RECITE_MARKED = Direct(), Recite(), ReciteMarked()
FORMATS: dict[str, AnswerFormat] = {f.name: f for f in (DIRECT, RECITE, RECITE_MARKED)}


def answer_format(name: str) -> AnswerFormat:
    """The format called `name` (the --answer_format option's value)."""
    if name not in FORMATS:
        raise FactlabError(f"--answer_format {name}: unknown (known: {', '.join(FORMATS)})")
    return FORMATS[name]


def checkpoint_format_name(params_path) -> str:
    """The name of the format a checkpoint answers in: what its finetuning recorded; "direct" for anything else
    (pretrained models, course files)."""
    header = checkpoint.read_config(params_path)
    found = header[2].get("answer_format", DIRECT.name) if header else DIRECT.name
    if found not in FORMATS:
        raise FactlabError(f"{params_path}: unknown answer format {found!r} in the checkpoint")
    return found


def checkpoint_format(params_path) -> AnswerFormat:
    return FORMATS[checkpoint_format_name(params_path)]
