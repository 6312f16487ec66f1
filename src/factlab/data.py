"""The corpus and question files parsed, the corpus indexed by title, the two course datasets, and padding-free
batching. (Files are read by io.read_text; the recite format's dataset is formats.RecitationDataset.)

Course contracts kept: `CharCorruptionDataset(data, block_size)` and `NameDataset(pretraining_dataset, data)`
expose `stoi`/`itos`, and `ds[i]` returns (x, y) LongTensors padded to block_size - 1.
The trainer does not use `ds[i]`: it asks for unpadded examples (`ds.example(i, rng)`) and pads each batch
only to its longest member, so no compute goes to padding.
"""

from __future__ import annotations

import functools
import random
import re
from collections import defaultdict
from dataclasses import dataclass

import torch

from . import FactlabError
from .vocab import MASK_CHAR, PAD_CHAR, PAD_ID, Vocab


@dataclass(frozen=True)
class Question:
    question: str
    answer: str | None  # None for question-only files such as birth_test_inputs.tsv
    where: str  # "file:line", for error messages


# What finetuning does with the question files' non-ASCII characters: drop them, as the course's NameDataset, or
# keep them (factlab's CPU recipes).
NON_ASCII = ("drop", "keep")


def parse_questions(text: str, source: str, require_answers: bool = True, drop_non_ascii: bool = False) -> list[Question]:
    """Parse `QUESTION<TAB>ANSWER` lines (or question-only lines when answers are not required).

    `drop_non_ascii` does what the course's NameDataset does to the finetuning questions: it drops their non-ASCII
    characters ("Ákos Császár" becomes "kos Csszr"), although wiki.txt spells the names with them. The course's
    evaluation reads the questions as they are.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    questions = []
    for number, line in enumerate(lines, start=1):
        where = f"{source}:{number}"
        line = line.removesuffix("\r")
        if drop_non_ascii:
            line = line.encode("ascii", errors="ignore").decode("ascii")
        fields = line.split("\t")
        if not line.strip():
            raise FactlabError(f"{where}: empty line")
        if len(fields) > 2:
            raise FactlabError(f"{where}: expected QUESTION<TAB>ANSWER, found {len(fields) - 1} tabs")
        if require_answers and len(fields) == 1:
            raise FactlabError(f"{where}: no tab; expected QUESTION<TAB>ANSWER")
        for special in (PAD_CHAR, MASK_CHAR):
            if special in line:
                raise FactlabError(f"{where}: contains the reserved character {special!r}")
        question, answer = fields[0], (fields[1] if len(fields) == 2 else None)
        if not question.strip() or answer is not None and not answer.strip():
            raise FactlabError(f"{where}: empty question or answer")
        questions.append(Question(question, answer, where))
    if not questions:
        raise FactlabError(f"{source}: no questions")
    has_answer = {q.answer is not None for q in questions}
    if len(has_answer) > 1:
        first = next(q for q in questions if (q.answer is None) != (questions[0].answer is None))
        raise FactlabError(f"{first.where}: some lines have an answer and some do not")
    return questions


# The held-out split settings are chosen on: 400 of the 2,000 training questions, drawn with this seed. The
# final run of a recipe finetunes on all of them and is scored on dev once.
VALIDATION_QUESTIONS, VALIDATION_SEED = 400, 0


def validation_split(questions: list[Question], n: int = VALIDATION_QUESTIONS, seed: int = VALIDATION_SEED,
                     source: str = "questions") -> tuple[list[Question], list[Question]]:
    """(the questions to finetune on, the n validation questions): n drawn by random.Random(seed), both kept in
    the file's order, so one seed and one file always give the same split."""
    if not 0 < n < len(questions):
        raise FactlabError(f"{source}: a validation split of {n} needs between 1 and {len(questions) - 1} "
                           f"questions ({len(questions)} in the file)")
    held_out = set(random.Random(seed).sample(range(len(questions)), n))
    return ([q for i, q in enumerate(questions) if i not in held_out],
            [q for i, q in enumerate(questions) if i in held_out])


def question_lines(questions: list[Question]) -> str:
    """The questions as a question<TAB>answer file."""
    return "".join(q.question + ("" if q.answer is None else "\t" + q.answer) + "\n" for q in questions)


def pad(ids: list[int], length: int) -> torch.Tensor:
    return torch.tensor(ids + [PAD_ID] * (length - len(ids)), dtype=torch.long)


def course_pair(ids: list[int], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The course's (x, y): the sequence padded to block_size first, then x = s[:-1], y = s[1:]."""
    s = pad(ids, block_size)
    return s[:-1], s[1:].clone()


def documents(corpus: str) -> list[str]:
    """The corpus's documents: one a line. Blank lines (the file's trailing newline) are not documents: they would
    teach nothing."""
    return [line for line in corpus.split("\n") if line.strip()]


QUESTION = re.compile(r"^Where was (.+) born\?$")
# The last word of a title prefix that cannot end a name: an initial ("Douglas P. Fry", "J.C. Patterson") or a
# suffix ("Moses Mason, Jr.").
_NOT_A_NAME_END = re.compile(r"(?:[A-Z]\.)*[A-Z]|Jr|Sr")


def document_title(document: str) -> str | None:
    """The name a biography is about: its text before the first ". " that does not follow an initial or a
    suffix, else before the first ". " at all ("Anastasius I. Pope Saint ..."); None without one in the first
    200 characters. On wiki.txt this is the name of the question file for all 2,937 documents."""
    ends = [m.start() for m in re.finditer(r"\. ", document[:200])]
    for end in ends:
        words = document[:end].split()
        if words and not _NOT_A_NAME_END.fullmatch(words[-1]):
            return document[:end]
    return document[: ends[0]] if ends and ends[0] > 0 else None


def corpus_names(corpus: str) -> list[str]:
    """The people of a corpus: every document's title (document_title), each once, in the corpus's order."""
    return list(dict.fromkeys(t for t in map(document_title, documents(corpus)) if t))


def question_name(question: str) -> str | None:
    match = QUESTION.match(question.strip())
    return match[1] if match else None


class CorpusIndex:
    """wiki.txt with its documents indexed by title: every prefix of a line that ends just before a period."""

    def __init__(self, text: str):
        self.text = text
        self.documents = documents(text)
        self.by_title: dict[str, list[int]] = defaultdict(list)
        for i, doc in enumerate(self.documents):
            for match in re.finditer(r"\.", doc[:200]):  # names may hold periods ("John F. Kennedy.")
                self.by_title[doc[: match.start()]].append(i)

    def documents_of(self, name: str | None) -> list[str]:
        return [self.documents[i] for i in self.by_title.get(name, [])] if name else []

    def mentions(self, name: str | None) -> bool:
        return bool(name) and name in self.text

    def place_in_documents(self, place: str, name: str | None) -> bool:
        if not place or not name:
            return False
        return any(place in doc.replace(name, "\0") for doc in self.documents_of(name))

    def place_in_document(self, name: str | None, place: str, ends_by: int) -> tuple[str, int] | None:
        """(document, position) of the first occurrence of `place` outside the name in the first of the
        person's documents where it ends within the first `ends_by` characters; None if there is none."""
        for doc in self.documents_of(name):
            at = doc.replace(name, "\0" * len(name)).find(place) if place else -1  # same length: same positions
            if at > 0 and at + len(place) <= ends_by:
                return doc, at
        return None


# Pretraining objectives: the course's span corruption, language modelling of each document from position 0,
# or, at every draw, one of the two at random (span corruption with chance span_share, by default one half).
OBJECTIVES = ("span", "lm", "mix")
MIX_SPAN_SHARE = 0.5  # the chance a draw of "mix" is span corruption, unless span_share says otherwise


def longest_span_draw(block_size: int) -> int:
    """The longest truncation of a document that span corruption draws (the course's int(block_size * 7/8))."""
    return int(block_size * 7 / 8)


def chance_draw_holds(end: int, block_size: int, objective: str, span_share: float = MIX_SPAN_SHARE,
                      salient_share: float = 0.0, salient: bool = True) -> float:
    """The chance that one pretraining draw of a document (at least `end` characters long) holds all of its
    first `end` characters: a fact there, a birthplace say, is in the text the model trains on. Span corruption
    keeps a prefix of uniform length in [4, longest_span_draw] (its span only moves within it), or with chance
    salient_share, where the document has a salient span (`salient`), masks one and keeps longest_span_draw
    characters; "lm" keeps the first block_size characters; "mix" is span corruption with chance span_share, else
    "lm". A fact beyond both is never seen, however long the training."""
    if objective not in OBJECTIVES:
        raise FactlabError(f"objective {objective!r}: unknown (known: {', '.join(OBJECTIVES)})")
    longest = longest_span_draw(block_size)
    span = max(0, longest - max(end, 4) + 1) / (longest - 3)
    if salient:
        span = salient_share * float(end <= longest) + (1 - salient_share) * span
    lm = float(end <= block_size)
    return {"span": span, "lm": lm, "mix": span_share * span + (1 - span_share) * lm}[objective]


# Salient span masking (Guu et al., "REALM", 2020; Roberts et al., "How Much Knowledge Can You Pack into the
# Parameters of a Language Model?", 2020): a span-corruption draw may mask a run of capitalised words (a place, a
# name, a month) instead of a random span, so the model practises filling in the facts a question asks for.
_WORD = re.compile(r"[^\s,.;:()\[\]]+")


@functools.lru_cache(maxsize=None)
def salient_spans(document: str, limit: int) -> tuple[tuple[int, int], ...]:
    """The (start, end) of every run of capitalised words (joined by " " or ", ") in the document's first `limit`
    characters after its title ("Name. "), except runs made only of the title's words (the person's own name)
    and a single capitalised word that opens the sentence ("Born", "He"); a run that a word cut by the limit
    would continue is left out. Unsupervised: no answer is read."""
    title_end = document.find(". ") + 2 if ". " in document else 0
    title_words = set(_WORD.findall(document[:title_end]))
    runs: list[list[int]] = []
    for word in _WORD.finditer(document, title_end):
        if not word[0][0].isupper():
            continue
        joiner = document[runs[-1][1]:word.start()] if runs else None
        # "Columbus, Ohio" is one run, "Glasgow, Lee" (Lee of the title) is not
        joins = joiner == " " or (joiner == ", " and word[0] not in title_words)
        if word.end() > limit:
            if joins:  # "New" of a cut "New York" is not a name
                runs.pop()
            break
        if joins:
            runs[-1][1] = word.end()
        else:
            runs.append([word.start(), word.end()])
    spans = []
    for start, end in runs:
        words = _WORD.findall(document[start:end])
        if all(w in title_words for w in words) or (start == title_end and len(words) == 1):
            continue
        spans.append((start, end))
    return tuple(spans)


class CharCorruptionDataset:
    """Span corruption for pretraining: a document becomes `prefix ⁇ suffix ⁇ masked`.

    Each draw truncates the document to a random length in [4, int(block_size * 7/8)] (shorter documents are kept
    whole), masks a random span of 1..n//2 characters (n/4 on average) and moves it to the end. The model learns to
    fill in the span, which is the same shape of task as answering `question ⁇ answer ⁇`.
    """

    def __init__(self, data: str, block_size: int, seed: int | None = None, source: str = "corpus",
                 objective: str = "span", span_share: float = MIX_SPAN_SHARE, salient_share: float = 0.0):
        if block_size < 9:  # below 9, int(7/8 * block_size) characters and two ⁇ overflow the block
            raise FactlabError(f"block size {block_size} is too small for span corruption (at least 9)")
        if objective not in OBJECTIVES:
            raise FactlabError(f"objective {objective!r}: unknown (known: {', '.join(OBJECTIVES)})")
        if not 0 < span_share < 1:
            raise FactlabError(f"span share {span_share}: must be between 0 and 1 (objective mix)")
        if not 0 <= salient_share <= 1 or (salient_share and objective == "lm"):
            raise FactlabError(f"salient share {salient_share}: must be between 0 and 1, with the objective span "
                               f"or mix (not {objective})")
        self.block_size, self.objective, self.span_share = block_size, objective, span_share
        self.salient_share = salient_share
        self.vocab = Vocab.from_text(data, source)
        self.stoi, self.itos = self.vocab.stoi, dict(enumerate(self.vocab.itos))
        self.vocab_size = len(self.vocab)
        self.PAD_CHAR, self.MASK_CHAR = PAD_CHAR, MASK_CHAR
        self.data = documents(data)
        self.rng = random.Random(seed)  # used only by __getitem__; the trainer passes its own generator

    def __len__(self) -> int:
        return len(self.data)

    def corrupt(self, document: str, rng: random.Random) -> str:
        n = min(len(document), rng.randint(4, longest_span_draw(self.block_size)))
        truncated = document[:n]
        masked_len = rng.randint(1, max(1, n // 2))
        start = rng.randint(0, n - masked_len)
        prefix, masked, suffix = truncated[:start], truncated[start : start + masked_len], truncated[start + masked_len :]
        return prefix + MASK_CHAR + suffix + MASK_CHAR + masked

    def mask_salient(self, document: str, rng: random.Random) -> str | None:
        """The document's first longest_span_draw characters with one of their salient spans, chosen uniformly,
        masked and moved to the end; None if they have none."""
        longest = longest_span_draw(self.block_size)
        spans = salient_spans(document, longest)
        if not spans:
            return None
        start, end = spans[rng.randrange(len(spans))]
        truncated = document[:longest]
        return truncated[:start] + MASK_CHAR + truncated[end:] + MASK_CHAR + truncated[start:end]

    def draw(self, document: str, rng: random.Random) -> str:
        """One training text of a document under the objective: "span" (the course's) corrupts it, masking a
        salient span with chance salient_share; "lm" is its first block_size characters, read from position 0 as
        a recitation starts; "mix" is span corruption with chance span_share, else "lm". ("span" without salient
        spans draws exactly the random numbers the course's dataset draws.)"""
        objective = self.objective
        if objective == "mix":
            objective = "span" if rng.random() < self.span_share else "lm"
        if objective == "lm":
            return document[: self.block_size]
        if self.salient_share and rng.random() < self.salient_share:
            masked = self.mask_salient(document, rng)
            if masked is not None:
                return masked
        return self.corrupt(document, rng)

    def example(self, idx: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpadded (x, y) for one fresh draw of document idx."""
        ids = torch.tensor(self.vocab.encode(self.draw(self.data[idx], rng)), dtype=torch.long)
        return ids[:-1], ids[1:]

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return course_pair(self.vocab.encode(self.corrupt(self.data[idx], self.rng)), self.block_size)


class NameDataset:
    """Finetuning: x = `question⁇answer⁇`, y shifted by one with PAD over the question, so loss falls only on
    `⁇answer⁇` (PAD targets are ignored by the loss)."""

    def __init__(self, pretraining_dataset: CharCorruptionDataset, data: str, source: str = "questions",
                 drop_non_ascii: bool = False):
        self.block_size = pretraining_dataset.block_size
        self.vocab = pretraining_dataset.vocab
        self.stoi, self.itos = pretraining_dataset.stoi, pretraining_dataset.itos
        self.PAD_CHAR, self.MASK_CHAR = PAD_CHAR, MASK_CHAR
        self.questions = parse_questions(data, source, require_answers=True, drop_non_ascii=drop_non_ascii)
        self.data = [f"{q.question}\t{q.answer}" for q in self.questions]
        self._encoded = []
        for q in self.questions:  # encode once, up front, so a bad line fails before any training starts
            prompt, completion = self.texts(q)
            ids = self.vocab.encode(prompt + completion, q.where)
            if len(ids) > self.block_size:
                raise FactlabError(f"{q.where}: question and answer are {len(ids)} characters with the two ⁇, "
                                   f"more than the block size {self.block_size}")
            self._encoded.append((len(prompt) - 1, ids))  # targets before the completion's first character: unscored

    def texts(self, q: Question) -> tuple[str, str]:
        """(prompt, what the model learns to write after it): the direct format's; formats.RecitationDataset
        gives the recite format's."""
        return q.question, MASK_CHAR + q.answer + MASK_CHAR

    def __len__(self) -> int:
        return len(self.questions)

    def example(self, idx: int, rng: random.Random | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        unscored, ids = self._encoded[idx]
        x = torch.tensor(ids[:-1], dtype=torch.long)
        y = torch.tensor(ids[1:], dtype=torch.long)
        y[:unscored] = PAD_ID
        return x, y

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        unscored, ids = self._encoded[idx]
        x, y = course_pair(ids, self.block_size)
        y[:unscored] = PAD_ID
        return x, y


class QuestionMixture:
    """Pretraining with the training questions mixed in (Allen-Zhu and Li, "Physics of Language Models, Part
    3.1": questions seen in pretraining make other people's stored facts extractable): every epoch draws every
    document once and as many question examples as make `share` of the epoch's examples, going round the
    questions in order, so a share of n / (n + documents) shows each of n questions once an epoch."""

    def __init__(self, corpus: CharCorruptionDataset, questions: NameDataset, share: float):
        if not 0 < share < 1:
            raise FactlabError(f"question share {share}: must be between 0 and 1")
        self.corpus, self.questions, self.share = corpus, questions, share
        self.vocab = corpus.vocab
        self.n_questions = round(share / (1 - share) * len(corpus))

    def __len__(self) -> int:
        return len(self.corpus) + self.n_questions

    def example(self, idx: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        if idx < len(self.corpus):
            return self.corpus.example(idx, rng)
        return self.questions.example((idx - len(self.corpus)) % len(self.questions), rng)


def collate(examples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (x, y) pairs padded with PAD to the longest x of the batch (not to the block size)."""
    length = max(len(x) for x, _ in examples)
    xs = torch.full((len(examples), length), PAD_ID, dtype=torch.long)
    ys = torch.full((len(examples), length), PAD_ID, dtype=torch.long)
    for row, (x, y) in enumerate(examples):
        xs[row, : len(x)] = x
        ys[row, : len(y)] = y
    return xs, ys


BATCHINGS = ("course", "length")  # the course's DataLoader (file order); factlab's length-grouped batches


def epoch_batches(dataset, batch_size: int, rng: random.Random, batching: str = "course"
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of batches, each padded to its longest example. "course" cuts the examples in file order into
    consecutive batches (the last one short), as the course's DataLoader does (it does not shuffle): the same
    documents share a batch every epoch, each drawn afresh. "length" groups examples of similar length in a new
    random order every epoch (length_grouped_batches), which pads less but changes which examples share a step."""
    if batching == "length":
        return length_grouped_batches(dataset, batch_size, rng)
    if batching != "course":
        raise FactlabError(f"batching {batching!r}: unknown (known: {', '.join(BATCHINGS)})")
    examples = [dataset.example(i, rng) for i in range(len(dataset))]
    return [collate(examples[i : i + batch_size]) for i in range(0, len(examples), batch_size)]


def length_grouped_batches(dataset, batch_size: int, rng: random.Random, window_batches: int = 8
                           ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of padded batches in which examples of similar length travel together.

    Examples are drawn in random order, sorted by length within windows of `window_batches` batches (so batch
    membership still changes from epoch to epoch), cut into batches, and the batches shuffled.
    """
    indices = list(range(len(dataset)))
    rng.shuffle(indices)
    examples = [dataset.example(i, rng) for i in indices]
    window = batch_size * window_batches
    batches = []
    for start in range(0, len(examples), window):
        chunk = sorted(examples[start : start + window], key=lambda xy: len(xy[0]))
        batches += [collate(chunk[i : i + batch_size]) for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches
