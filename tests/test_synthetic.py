"""Tests for the synthetic birthplace corpus (factlab.synthetic)."""
from collections import Counter

import re

import pytest
from hypothesis import given, settings, strategies as st

from factlab.synthetic import PLACES, SyntheticCorpus, generate

QUESTION_PREFIX, QUESTION_SUFFIX = "Where was ", " born?"


def _qa(tsv: str) -> list[tuple[str, str]]:
    pairs = []
    for line in tsv.splitlines():
        question, place = line.split("\t")
        assert question.startswith(QUESTION_PREFIX) and question.endswith(QUESTION_SUFFIX)
        pairs.append((question[len(QUESTION_PREFIX):-len(QUESTION_SUFFIX)], place))
    return pairs


def _test_names(text: str) -> list[str]:
    names = []
    for line in text.splitlines():
        assert "\t" not in line
        assert line.startswith(QUESTION_PREFIX) and line.endswith(QUESTION_SUFFIX)
        names.append(line[len(QUESTION_PREFIX):-len(QUESTION_SUFFIX)])
    return names


def _docs_by_name(corpus: SyntheticCorpus) -> dict[str, list[str]]:
    docs: dict[str, list[str]] = {}
    for line in corpus.wiki.splitlines():
        name = line.split(". ", 1)[0]
        docs.setdefault(name, []).append(line)
    return docs


@pytest.fixture(scope="module")
def corpus() -> SyntheticCorpus:
    return generate(seed=0, n_people=400)


def test_deterministic_by_seed():
    assert generate(seed=3, n_people=50) == generate(seed=3, n_people=50)
    assert generate(seed=3, n_people=50).wiki != generate(seed=4, n_people=50).wiki
    assert generate(seed=3, n_people=50).train != generate(seed=4, n_people=50).train


def test_wiki_line_format(corpus):
    assert corpus.wiki.endswith("\n")
    lines = corpus.wiki.split("\n")[:-1]
    assert len(lines) == 400
    for line in lines:
        assert line.isascii()
        assert 30 <= len(line) <= 140, line
        name, text = line.split(". ", 1)
        assert text.endswith(" .")
        assert name and "\t" not in line


def test_names_unique_and_one_document_each(corpus):
    docs = _docs_by_name(corpus)
    assert len(docs) == 400
    assert all(len(d) == 1 for d in docs.values())
    people = [n for n, _ in _qa(corpus.train) + _qa(corpus.dev)] + _test_names(corpus.test_inputs)
    assert len(people) == len(set(people)) == 400
    assert set(people) == set(docs)


def test_gold_place_in_document(corpus):
    docs = _docs_by_name(corpus)
    for name, place in _qa(corpus.train) + _qa(corpus.dev):
        assert place in PLACES
        assert place in docs[name][0]


def test_splits_disjoint_and_sized(corpus):
    train = {n for n, _ in _qa(corpus.train)}
    dev = {n for n, _ in _qa(corpus.dev)}
    test = set(_test_names(corpus.test_inputs))
    assert (len(train), len(dev), len(test)) == (280, 80, 40)
    assert not (train & dev) and not (train & test) and not (dev & test)


def test_wiki_order_is_shuffled(corpus):
    train_names = [n for n, _ in _qa(corpus.train)]
    wiki_names = [line.split(". ", 1)[0] for line in corpus.wiki.splitlines()]
    assert wiki_names[: len(train_names)] != train_names
    assert wiki_names != sorted(wiki_names)


def test_place_distribution_is_skewed(corpus):
    # Over train + dev of the default corpus (360 of 400 people).
    places = Counter(p for _, p in _qa(corpus.train) + _qa(corpus.dev))
    share = places.most_common(1)[0][1] / 360
    assert 0.03 <= share <= 0.08
    # With no test split every person has a labelled birthplace: all places occur
    # several times, and the top place covers about 5% of people, as London does in the real data.
    full = generate(seed=0, n_people=400, dev_fraction=0.2, test_fraction=0.0)
    everyone = Counter(p for _, p in _qa(full.train) + _qa(full.dev))
    assert sum(everyone.values()) == 400
    assert set(everyone) == set(PLACES)
    assert min(everyone.values()) >= 5
    assert 0.04 <= everyone.most_common(1)[0][1] / 400 <= 0.06


def test_distracting_second_place(corpus):
    docs = _docs_by_name(corpus)
    with_distractor = 0
    for name, place in _qa(corpus.train):
        others = [p for p in PLACES if p != place and p in docs[name][0]]
        with_distractor += bool(others)
    assert 0.2 * 280 <= with_distractor < 280


def test_tsv_lines_have_one_tab(corpus):
    for text in (corpus.train, corpus.dev):
        assert text.endswith("\n")
        assert all(line.count("\t") == 1 for line in text.splitlines())
    assert corpus.test_inputs.count("\t") == 0


def test_write_creates_files_atomically(tmp_path, corpus):
    target = tmp_path / "new" / "dir"
    paths = corpus.write(target)
    assert set(paths) == {"wiki", "train", "dev", "test"}
    expected = {"wiki": corpus.wiki, "train": corpus.train,
                "dev": corpus.dev, "test": corpus.test_inputs}
    names = {"wiki": "wiki.txt", "train": "birth_places_train.tsv",
             "dev": "birth_dev.tsv", "test": "birth_test_inputs.tsv"}
    for key, path in paths.items():
        assert path == target / names[key]
        assert path.read_bytes() == expected[key].encode("ascii")
    assert sorted(p.name for p in target.iterdir()) == sorted(names.values())
    corpus.write(target)  # overwriting an existing corpus works too
    assert sorted(p.name for p in target.iterdir()) == sorted(names.values())


@pytest.mark.parametrize("kwargs", [
    {"n_people": 9},
    {"n_people": 0},
    {"dev_fraction": 0.6, "test_fraction": 0.4},
    {"dev_fraction": 0.99, "test_fraction": 0.5},
    {"dev_fraction": -0.1},
    {"test_fraction": 1.0},
])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        generate(**kwargs)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n_people=st.integers(10, 300),
       dev_fraction=st.sampled_from([0.0, 0.1, 0.2, 0.3]),
       test_fraction=st.sampled_from([0.0, 0.1, 0.2]))
def test_properties_over_seeds_and_sizes(seed, n_people, dev_fraction, test_fraction):
    c = generate(seed, n_people, dev_fraction, test_fraction)
    docs = _docs_by_name(c)
    train, dev, test = _qa(c.train), _qa(c.dev), _test_names(c.test_inputs)
    assert len(train) + len(dev) + len(test) == n_people == len(docs)
    assert len(dev) == round(n_people * dev_fraction)
    assert len(test) == round(n_people * test_fraction)
    assert len(train) >= 1
    for name, place in train + dev:
        assert len(docs[name]) == 1 and place in docs[name][0]
    assert all(30 <= len(line) <= 140 for line in c.wiki.splitlines())


def template_of(text: str) -> int:
    """Index of the first template whose shape (fields as wildcards) matches a document's text."""
    from factlab.synthetic import _TEMPLATES

    for i, template in enumerate(_TEMPLATES):
        pattern = re.sub(r"\\\{\w+\\\}", ".+?", re.escape(template))
        if re.fullmatch(pattern, text):
            return i
    raise AssertionError(f"no template matches {text!r}")


def test_several_biographies_per_person():
    """bios_per_person=k gives every person k documents, each with the birthplace, in k different phrasings."""
    corpus = generate(seed=3, n_people=40, bios_per_person=3)
    lines = corpus.wiki.splitlines()
    people = [line.split("\t") for line in corpus.train.splitlines() + corpus.dev.splitlines()]
    for question, place in people:
        name = question[len("Where was "):-len(" born?")]
        docs = [line for line in lines if line.startswith(name + ". ")]
        assert len(docs) == 3 and all(place in d for d in docs)
        assert len({template_of(d.split(". ", 1)[1]) for d in docs}) == 3  # three different phrasings
    assert len(lines) == 3 * 40
    with pytest.raises(ValueError, match="bios_per_person"):
        generate(seed=0, n_people=20, bios_per_person=0)
