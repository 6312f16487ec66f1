"""Synthetic stand-in for the CS224N birthplace data (wiki.txt + question files).

The tests and `factlab demo` must run without the real Wikipedia data, so this
module writes a small corpus of the same shape: one short biography per line
(`Full Name. text .`), finetuning lines `Where was NAME born?<TAB>PLACE`, a dev
file of people who are NOT in the finetuning file, and question-only test inputs.

The people are fictional (names built from invented syllables) so a model can
only answer by reading the pretraining corpus, never from real-world knowledge.
Many biographies also mention a second, distracting place (where the person lives,
studied or moved to), so "copy the only place in the text" is not a solution: the
model has to learn that the answer is the place attached to "born".
Birthplaces follow a skewed distribution, so the "always answer the most frequent
place" baseline scores low but non-zero, as with the real data.
"""
from __future__ import annotations

import pathlib
import random
from dataclasses import dataclass

from .io import write_text_atomic

# Invented syllables: two per first name / surname gives ~90k distinct pairs.
_FIRST_A = ["Od", "Mi", "Ta", "Ve", "Lo", "Ca", "Be", "Ni", "Sa", "Ro",
            "Ha", "El", "Ju", "Ka", "Pe", "Ze", "Fa", "Ia", "Da", "Wy"]
_FIRST_B = ["rel", "ra", "min", "sa", "dric", "lia", "nor", "vek",
            "ten", "mis", "dan", "rin", "wyn", "lo", "bet", "ria"]
_LAST_A = ["Vas", "Tol", "Mar", "Quin", "Dre", "Hal", "Ost", "Bram", "Cor",
           "Fen", "Gal", "Lum", "Nes", "Pra", "Ril", "Sto", "Thal", "Wex"]
_LAST_B = ["keth", "banne", "ovic", "ley", "dane", "more", "rick", "wyn",
           "holt", "sen", "ard", "ton", "ius", "ow", "ek", "by"]

# Real and fictional places, some multi-word. Weights are assigned by rank after
# a seeded shuffle, so which place dominates differs from seed to seed.
PLACES = [
    "London", "Paris", "Chicago", "Berlin", "Madrid", "Toronto", "Sydney", "Dublin",
    "Vienna", "Lisbon", "Boston", "Glasgow", "Mumbai", "Cairo", "Oslo", "Prague",
    "Lagos", "Seattle", "Melbourne", "Naples", "Kelvarro", "Ashmere", "Duncliff",
    "Port Velan", "Norwick", "Saltmoor", "Brennhaven", "Oskara", "Veldris", "Tarnholm",
    "Lowen Bay", "Emberfell", "Quillon", "Marrowgate", "Sundale", "Halvik", "Corrith",
    "Ystrel", "Fenmarch", "New Ardent"]
_JOBS = ["painter", "journalist", "engineer", "chemist", "poet", "architect",
         "nurse", "farmer", "historian", "actor", "teacher", "economist"]

# Wikipedia-like phrasings. {Q} is a distracting second place (never the
# birthplace); some templates put it before the birthplace on purpose.
_TEMPLATES = [
    "{name} was born in {P} and works as {a_job} .",
    "Born in {P}, {last} became {a_job} .",
    "{name} (born {year} in {P}) is {a_job} who lives in {Q} .",
    "{name} is {a_job} . {Pron} was born in {P} .",
    "{name} was born in {P} in {year} and studied in {Q} .",
    "{name} lives in {Q} . {Pron} is {a_job} born in {P} .",
    "{last} is {a_job} from {P} who moved to {Q} in {year2} .",
    "{name}, born in {P}, is {a_job} based in {Q} .",
    # The questions need "W" and "?", and the vocabulary comes from the corpus alone, as in the course.
    "{name} is {a_job} who was born in {P} . Why {Q}? {Pron} moved there in {year2} .",
]


@dataclass(frozen=True)
class SyntheticCorpus:
    wiki: str         # one document per line, each line ends with "\n"
    train: str        # "Where was NAME born?\tPLACE\n" lines, for finetuning
    dev: str          # same format, people disjoint from train
    test_inputs: str  # "Where was NAME born?\n" lines, disjoint from train and dev

    def write(self, directory) -> dict[str, pathlib.Path]:
        """Write the four files into `directory`, each atomically (io.write_text_atomic)."""
        paths = {}
        for key, name, text in (("wiki", "wiki.txt", self.wiki),
                                ("train", "birth_places_train.tsv", self.train),
                                ("dev", "birth_dev.tsv", self.dev),
                                ("test", "birth_test_inputs.tsv", self.test_inputs)):
            paths[key] = pathlib.Path(directory) / name
            write_text_atomic(paths[key], text)
        return paths


def _place_counts(n: int, rng: random.Random) -> list[str]:
    """Return n birthplaces with a Zipf-like (1 / (rank + 15)) skew, in random order."""
    # As skewed as the real data, where the top answer (London) is 4.5% of the training questions: the top place
    # gets ~4.9% and the rarest ~1.4%. A steeper skew lets a model that never read a biography score well by
    # always naming the top place. Counts are apportioned exactly instead of sampled: no sampling noise.
    places = PLACES[:]
    rng.shuffle(places)
    weights = [1.0 / (rank + 15) for rank in range(1, len(places) + 1)]
    quotas = [n * w / sum(weights) for w in weights]
    counts = [int(q) for q in quotas]
    by_remainder = sorted(range(len(places)), key=lambda i: counts[i] - quotas[i])
    for i in by_remainder[: n - sum(counts)]:  # largest remainders first
        counts[i] += 1
    drawn = [p for p, c in zip(places, counts) for _ in range(c)]
    rng.shuffle(drawn)
    return drawn


def _names(n: int, rng: random.Random) -> list[str]:
    def part(a, b):
        return rng.choice(a) + rng.choice(b)
    names: list[str] = []
    seen: set[str] = set()
    for _ in range(100 * n):
        if len(names) == n:
            break
        first, last = part(_FIRST_A, _FIRST_B), part(_LAST_A, _LAST_B)
        middle = [part(_FIRST_A, _FIRST_B)] if rng.random() < 0.2 else []
        name = " ".join([first, *middle, last])
        # A place name inside a person's name would make exact-match answers leak.
        if name not in seen and not any(p in name for p in PLACES):
            seen.add(name)
            names.append(name)
    if len(names) < n:
        raise ValueError(f"could not generate {n} unique names; use fewer people")
    return names


def _document(name: str, place: str, rng: random.Random, template: str | None = None) -> str:
    job = rng.choice(_JOBS)
    year = rng.randint(1921, 1990)
    text = (template or rng.choice(_TEMPLATES)).format(
        name=name, last=name.split()[-1], P=place,
        Q=rng.choice([p for p in PLACES if p != place]),
        a_job=("an " if job[0] in "aeiou" else "a ") + job,
        Pron=rng.choice(["She", "He"]), year=year, year2=year + rng.randint(20, 30))
    return f"{name}. {text}"


def generate(seed: int = 0, n_people: int = 400, dev_fraction: float = 0.2,
             test_fraction: float = 0.1, bios_per_person: int = 1) -> SyntheticCorpus:
    """Build a deterministic corpus: same arguments -> byte-identical output.

    With bios_per_person > 1 each person gets that many biographies in different phrasings. A fact read in one
    phrasing only is memorised but hard to extract by questions; varied phrasings make it extractable
    (Allen-Zhu & Li, "Physics of Language Models: Part 3.1", 2023).
    """
    if not 1 <= bios_per_person <= len(_TEMPLATES):
        raise ValueError(f"bios_per_person must be in [1, {len(_TEMPLATES)}], got {bios_per_person}")
    if n_people < 10:
        raise ValueError(f"n_people must be at least 10, got {n_people}")
    for label, frac in (("dev_fraction", dev_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{label} must be in [0, 1), got {frac}")
    n_dev, n_test = round(n_people * dev_fraction), round(n_people * test_fraction)
    n_train = n_people - n_dev - n_test
    if n_train < 1:
        raise ValueError(f"dev_fraction={dev_fraction} and test_fraction={test_fraction} "
                         f"leave no training people out of {n_people}")

    rng = random.Random(seed)  # the only randomness source: never the global module
    people = list(zip(_names(n_people, rng), _place_counts(n_people, rng)))
    docs = []
    for i, (name, place) in enumerate(people):
        templates = rng.sample(_TEMPLATES, bios_per_person)  # distinct phrasings for one person
        if i == 0 and _TEMPLATES[-1] not in templates:
            templates[0] = _TEMPLATES[-1]  # so that every corpus has "?" and "W" and can encode its questions
        docs += [_document(name, place, rng, template) for template in templates]
    rng.shuffle(docs)  # wiki order must not reveal the split

    def questions(group, with_answer=True):
        return "".join(f"Where was {name} born?" + (f"\t{place}" if with_answer else "")
                       + "\n" for name, place in group)

    # Names and places were drawn independently and in random order, so
    # consecutive slices are already random splits.
    return SyntheticCorpus(
        wiki="".join(d + "\n" for d in docs),
        train=questions(people[:n_train]),
        dev=questions(people[n_train:n_train + n_dev]),
        test_inputs=questions(people[n_train + n_dev:], with_answer=False),
    )
