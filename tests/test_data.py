"""factlab.data: the course's dataset contracts (vocabulary, span corruption, NameDataset), batching, bad input."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from hypothesis import given, settings, strategies as st

from factlab import FactlabError
from factlab.data import (MIX_SPAN_SHARE, CharCorruptionDataset, NameDataset, Question, QuestionMixture,
                          chance_draw_holds, collate, epoch_batches, length_grouped_batches, longest_span_draw,
                          parse_questions, salient_spans, validation_split)
from factlab.io import read_text
from factlab.synthetic import generate
from factlab.vocab import MASK_CHAR, PAD_ID

PAD, MASK = "\u25a1", "\u2047"
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ .,'-"
WIKI = "Ab Cd was born in Paris .\nEf Gh was born in Zürich and lives in Oslo .\nWhere? Here .\n"
PROPERTY = settings(max_examples=30, deadline=None)


def decode(ds, ids) -> str:
    return "".join(ds.itos[int(i)] for i in ids)


def split_corruption(ds, x, y):
    """Check the (x, y) invariants shared by every draw and return (prefix, suffix, masked, n_pads)."""
    assert x.dtype == y.dtype == torch.long
    assert x.shape == y.shape == (ds.block_size - 1,)
    assert torch.equal(x[1:], y[:-1]), "y must be x shifted by one"
    s = decode(ds, x) + ds.itos[int(y[-1])]
    body = s.rstrip(PAD)
    assert PAD not in body, "padding only at the end"
    assert body.count(MASK) == 2, "exactly two ⁇ before the padding"
    prefix, suffix, masked = body.split(MASK)
    return prefix, suffix, masked, len(s) - len(body)


# ---------------------------------------------------------------- vocabulary and documents


def test_vocabulary_contract():
    """id 0 = □ (PAD), id 1 = ⁇ (MASK), ids 2.. the sorted distinct characters (newline included), stoi/itos inverse."""
    ds = CharCorruptionDataset(WIKI, 32)
    assert ds.itos[0] == PAD and ds.stoi[PAD] == 0
    assert ds.itos[1] == MASK and ds.stoi[MASK] == 1
    assert [ds.itos[i] for i in range(2, ds.vocab_size)] == sorted(set(WIKI))
    assert ds.vocab_size == len(set(WIKI)) + 2 == len(ds.stoi) == len(ds.itos)
    assert all(ds.itos[i] == ch for ch, i in ds.stoi.items())


def test_documents_are_the_nonempty_lines():
    """Blank and whitespace-only lines (including the final newline) are not documents."""
    ds = CharCorruptionDataset("first doc\n\nsecond one\n   \nthird\n", 32)
    assert ds.data == ["first doc", "second one", "third"]
    assert len(ds) == 3


# ---------------------------------------------------------------- span corruption


@PROPERTY
@given(docs=st.lists(st.text(LETTERS, min_size=1, max_size=80).filter(str.strip), min_size=1, max_size=5),
       block_size=st.sampled_from([16, 24, 32, 64]), seed=st.integers(0, 10**6))
def test_corruption_shape(docs, block_size, seed):
    """ds[i] decodes to prefix⁇suffix⁇masked + PADs, prefix+masked+suffix a truncation of the document of
    length in [4, int(bs*7/8)] (or the whole document when shorter), masked non-empty."""
    ds = CharCorruptionDataset("\n".join(docs) + "\n", block_size, seed=seed)
    high = int(block_size * 7 / 8)
    for i, doc in enumerate(ds.data):
        for _ in range(3):
            prefix, suffix, masked, n_pads = split_corruption(ds, *ds[i])
            truncated = prefix + masked + suffix
            n = len(truncated)
            assert doc.startswith(truncated)
            assert n <= high and (n >= 4 or n == len(doc))
            assert len(masked) >= 1
            assert n + 2 + n_pads == block_size


def test_truncation_lengths_cover_range_and_mask_ratio_about_a_quarter():
    """Over many draws of a long document every truncation length in [4, 28] (block_size 32) occurs, and the
    masked span is 1/4 of the truncated document on average."""
    doc = "".join(random.Random(1).choice(LETTERS.strip()) for _ in range(200))
    ds = CharCorruptionDataset(doc + "\n", 32, seed=0)
    lengths, ratios = Counter(), []
    for _ in range(2000):
        prefix, suffix, masked, _ = split_corruption(ds, *ds[0])
        n = len(prefix) + len(masked) + len(suffix)
        assert doc.startswith(prefix + masked + suffix)
        lengths[n] += 1
        ratios.append(len(masked) / n)
    assert set(lengths) == set(range(4, 29))
    assert 0.2 <= sum(ratios) / len(ratios) <= 0.3


def test_corruption_is_deterministic_given_seed():
    """Same seed -> the same sequence of draws; another seed -> different draws."""
    text = "".join(random.Random(2).choice(LETTERS) for _ in range(300)) + "\nshort doc here\n"

    def draws(seed):
        ds = CharCorruptionDataset(text, 32, seed=seed)
        return [tuple(ds[i % 2][0].tolist()) for i in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_example_is_the_unpadded_draw():
    """example(i, rng) gives the same corruption as ds[i] with the same generator state, without the padding."""
    text = "".join(random.Random(3).choice(LETTERS) for _ in range(100)) + "\n"
    ds = CharCorruptionDataset(text, 32, seed=5)
    x_pad, y_pad = ds[0]
    x, y = ds.example(0, random.Random(5))
    assert torch.equal(x_pad[: len(x)], x) and torch.equal(y_pad[: len(y)], y)
    assert x_pad[len(x)] == y[-1]  # the unpadded x stops one short of the last character
    assert (x_pad[len(x) + 1:] == 0).all() and (y_pad[len(y):] == 0).all()
    assert 0 not in x.tolist()


def test_small_block_size_still_gives_block_minus_one():
    """The (x, y) length contract holds down to the smallest block size span corruption fits (9); below, an error."""
    ds = CharCorruptionDataset("abcdefghijklmnopqrstuvwxyz\n", 9, seed=0)
    assert {len(ds[0][0]) for _ in range(50)} == {8}
    with pytest.raises(FactlabError, match="block size 8 is too small"):
        CharCorruptionDataset("abcdefghijklmnopqrstuvwxyz\n", 8, seed=0)


# ---------------------------------------------------------------- NameDataset


@pytest.fixture(scope="module")
def wiki_ds():
    return CharCorruptionDataset(WIKI, 64)


@PROPERTY
@given(question=st.text("abcdefGhPW ?", min_size=1, max_size=30).filter(str.strip),
       answer=st.text("abcdefPZ", min_size=1, max_size=20))
def test_name_dataset_layout(wiki_ds, question, answer):
    """The course's s = question⁇answer⁇ + PADs (block_size chars): x is s[:-1] up to the closing ⁇, y is PAD
    over the first len(question)-1 positions and s shifted elsewhere, so the non-PAD targets decode to
    ⁇answer⁇; example(i) is the unpadded version."""
    ds = NameDataset(wiki_ds, f"{question}\t{answer}\n")
    x, y = ds[0]
    assert x.shape == y.shape == (63,) and x.dtype == y.dtype == torch.long
    full = question + MASK + answer + MASK
    s = (full + PAD * 64)[:64]
    q = len(question)
    assert decode(ds, x)[: len(full) - 1] == full[:-1]
    assert decode(ds, y) == PAD * (q - 1) + s[q:]
    assert torch.equal(y[q - 1: len(full) - 2], x[q: len(full) - 1])  # x shifted, where y is not PAD
    assert decode(ds, y[y != 0]) == MASK + answer + MASK
    ux, uy = ds.example(0)
    assert len(ux) == len(uy) == len(full) - 1
    assert torch.equal(ux, x[: len(ux)]) and torch.equal(uy, y[: len(uy)])
    assert (uy[: q - 1] == 0).all() and (uy[q - 1:] != 0).all()


def test_name_dataset_padded_x_is_course_string(wiki_ds):
    """ds[i]'s x is exactly (question⁇answer⁇ + PADs)[:-1], as in the course."""
    ds = NameDataset(wiki_ds, "Where was Ab born?\tParis\n")
    s = ("Where was Ab born?" + MASK + "Paris" + MASK + PAD * 64)[:64]
    assert decode(ds, ds[0][0]) == s[:-1]


def test_name_dataset_keeps_course_attributes(wiki_ds):
    """The course's attributes: stoi/itos/block_size shared with the pretraining dataset, data lines kept."""
    ds = NameDataset(wiki_ds, "Where was Ab born?\tParis\nWhere was Ef born?\tZürich\n")
    assert ds.stoi is wiki_ds.stoi and ds.itos is wiki_ds.itos and ds.block_size == 64
    assert len(ds) == 2 and ds.data[1] == "Where was Ef born?\tZürich"


def test_non_ascii_kept_by_default_and_dropped_on_request(wiki_ds):
    """Default keeps 'ü'; drop_non_ascii reproduces the course and drops it."""
    line = "Where was Ef born?\tZürich\n"
    kept = NameDataset(wiki_ds, line)
    dropped = NameDataset(wiki_ds, line, drop_non_ascii=True)
    assert decode(kept, kept.example(0)[0]) == "Where was Ef born?" + MASK + "Zürich"
    assert decode(dropped, dropped.example(0)[0]) == "Where was Ef born?" + MASK + "Zrich"
    assert parse_questions(line, "f")[0].answer == "Zürich"
    assert parse_questions(line, "f", drop_non_ascii=True)[0].answer == "Zrich"


# ---------------------------------------------------------------- batching


def test_collate_pads_to_longest_in_batch():
    """collate pads with PAD to the longest example of the batch, not to the block size."""
    examples = [(torch.tensor([5, 6, 7]), torch.tensor([6, 7, 8])), (torch.tensor([9]), torch.tensor([3])),
                (torch.tensor([4, 4, 4, 4, 4]), torch.tensor([0, 0, 4, 4, 1]))]
    xs, ys = collate(examples)
    assert xs.shape == ys.shape == (3, 5)
    assert xs.tolist() == [[5, 6, 7, 0, 0], [9, 0, 0, 0, 0], [4, 4, 4, 4, 4]]
    assert ys.tolist() == [[6, 7, 8, 0, 0], [3, 0, 0, 0, 0], [0, 0, 4, 4, 1]]


@pytest.mark.parametrize("batch_size", [1, 6, 8, 64])
def test_length_grouped_batches_cover_each_example_once(finetune_ds, batch_size):
    """Every example appears exactly once per epoch, each batch is padded only to its own longest member,
    and (one window covers the dataset here) batches hold contiguous, non-overlapping length ranges."""
    batches = length_grouped_batches(finetune_ds, batch_size, random.Random(0))
    expected = Counter(tuple(finetune_ds.example(i)[0].tolist()) for i in range(len(finetune_ds)))
    seen, ranges = Counter(), []
    for xs, ys in batches:
        assert xs.shape == ys.shape and len(xs) <= batch_size
        lengths = (xs != 0).sum(1)
        assert xs.size(1) == int(lengths.max())
        for row, n in zip(xs, lengths):
            assert (row[n:] == 0).all()
            seen[tuple(row[:n].tolist())] += 1
        ranges.append((int(lengths.min()), int(lengths.max())))
    assert seen == expected
    assert sum(len(xs) for xs, _ in batches) == len(finetune_ds)
    ranges.sort()
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(ranges, ranges[1:]))


def test_course_batches_are_the_examples_in_file_order(finetune_ds):
    """The course's DataLoader (no shuffling): consecutive batches of the examples in file order, the last one
    short, each padded to its own longest; the same examples share a batch every epoch. Length-grouped batches
    hold rows of more similar lengths."""
    rng = random.Random(0)
    batches = epoch_batches(finetune_ds, 8, rng)
    assert [len(xs) for xs, _ in batches] == [8] * (len(finetune_ds) // 8) + [len(finetune_ds) % 8] * (
        len(finetune_ds) % 8 > 0)
    rows = [row[: int((row != 0).sum())].tolist() for xs, _ in batches for row in xs]
    assert rows == [finetune_ds.example(i)[0].tolist() for i in range(len(finetune_ds))]
    assert all(xs.size(1) == int((xs != 0).sum(1).max()) for xs, _ in batches)
    grouped = length_grouped_batches(finetune_ds, 8, random.Random(0))
    spread = [int((xs != 0).sum(1).max() - (xs != 0).sum(1).min()) for xs, _ in batches]
    assert sum(spread) > sum(int((xs != 0).sum(1).max() - (xs != 0).sum(1).min()) for xs, _ in grouped)
    with pytest.raises(FactlabError, match="batching 'sorted': unknown"):
        epoch_batches(finetune_ds, 8, rng, "sorted")


def test_length_grouped_batches_pretraining_epoch(pretrain_ds):
    """For span corruption too: one row per document per epoch, rows start with their document's text or ⁇."""
    rng = random.Random(0)
    batches = length_grouped_batches(pretrain_ds, 16, rng)
    assert sum(len(xs) for xs, _ in batches) == len(pretrain_ds)
    for xs, ys in batches:
        assert torch.equal(xs[:, 1:][xs[:, 1:] != 0], ys[:, :-1][xs[:, 1:] != 0])
        assert ((xs == 1).sum(1) >= 1).all()  # the first ⁇ is always in x


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("text, line, words", [
    ("Where was Ab born?\tParis\nWhere was Ef born? Oslo\n", 2, "tab"),
    ("Where was Ab born?\tParis\nWhere was Ef\tborn?\tOslo\n", 2, "tabs"),
    ("Where was Ab born?\tParis\n\nWhere was Ef born?\tOslo\n", 2, "empty"),
    ("Where was Ab born?\tParis\nWhere was Ef born?\t \n", 2, "empty"),
])
def test_malformed_question_lines_name_file_and_line(wiki_ds, text, line, words):
    """A line without a tab, with two tabs, empty, or with an empty answer -> FactlabError 'file:LINE: ...'."""
    with pytest.raises(FactlabError, match=f"train.tsv:{line}:.*{words}"):
        parse_questions(text, "train.tsv")
    with pytest.raises(FactlabError, match=f"train.tsv:{line}:"):
        NameDataset(wiki_ds, text, source="train.tsv")


def test_mixed_answered_and_unanswered_lines(wiki_ds):
    """Question-only files are allowed for evaluation, but not mixed with answered lines."""
    assert parse_questions("Where was Ab born?\n", "t.tsv", require_answers=False)[0].answer is None
    with pytest.raises(FactlabError, match="t.tsv:2:"):
        parse_questions("Where was Ab born?\tParis\nWhere was Ef born?\n", "t.tsv", require_answers=False)


def test_unknown_character_names_line_and_character(wiki_ds):
    """A character not in the pretraining vocabulary -> FactlabError naming file:LINE and the character."""
    text = "Where was Ab born?\tParis\nWhere was Zoë born?\tOslo\n"
    with pytest.raises(FactlabError, match="train.tsv:2:") as err:
        NameDataset(wiki_ds, text, source="train.tsv")
    assert "'ë'" in str(err.value)


def test_question_longer_than_block_size_rejected():
    """A question + answer that cannot fit the block -> FactlabError naming the line."""
    small = CharCorruptionDataset(WIKI, 16)
    with pytest.raises(FactlabError, match="q.tsv:1:.*block size"):
        NameDataset(small, "Where was Ab Cd born?\tParis\n", source="q.tsv")


def test_reserved_characters_in_question_file_rejected(wiki_ds):
    """A question containing ⁇ would be indistinguishable from the question/answer separator."""
    with pytest.raises(FactlabError, match="q.tsv:1:"):
        NameDataset(wiki_ds, f"Where was Ab{MASK} born?\tParis\n", source="q.tsv")


@pytest.mark.parametrize("content, words", [
    (b"", "empty"), (b"  \n\n", "empty"), (b"caf\xe9 au lait\n", "UTF-8"),
])
def test_read_text_bad_files_name_the_path(tmp_path, content, words):
    """Empty, whitespace-only or non-UTF-8 files -> FactlabError naming the path."""
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(FactlabError, match=words) as err:
        read_text(path)
    assert str(path) in str(err.value)


def test_read_text_missing_file_and_directory(tmp_path):
    for path in (tmp_path / "missing.txt", tmp_path):
        with pytest.raises(FactlabError) as err:
            read_text(path)
        assert str(path) in str(err.value)
    (tmp_path / "ok.txt").write_text("Zürich\n", encoding="utf-8")
    assert read_text(tmp_path / "ok.txt") == "Zürich\n"


@pytest.mark.parametrize("char", [PAD, MASK])
def test_reserved_characters_in_corpus_rejected(char):
    """The corpus may not contain the PAD or MASK character; the error names source:LINE."""
    with pytest.raises(FactlabError, match="wiki.txt:2:"):
        CharCorruptionDataset(f"first line\nsecond {char} line\n", 32, source="wiki.txt")


def test_raw_synthetic_corpus_questions_encode():
    """The synthetic question files use only characters of the synthetic wiki (as the real data does)."""
    corpus = generate(seed=0, n_people=20)
    NameDataset(CharCorruptionDataset(corpus.wiki, 128), corpus.train)


@settings(max_examples=40, deadline=None)
@given(n_questions=st.integers(2, 60), data=st.data())
def test_validation_split_partitions_the_questions_the_same_way_every_time(n_questions, data):
    """The held-out questions and the rest are disjoint, together the whole file, each in file order; one seed
    always draws the same ones, and another seed (almost always) others."""
    questions = [Question(f"Where was P{i} born?", f"Place{i}", f"t:{i + 1}") for i in range(n_questions)]
    n = data.draw(st.integers(1, n_questions - 1))
    rest, held_out = validation_split(questions, n, seed=3)
    assert len(held_out) == n and len(rest) == n_questions - n
    assert sorted(rest + held_out, key=questions.index) == questions
    assert rest == sorted(rest, key=questions.index) and held_out == sorted(held_out, key=questions.index)
    assert validation_split(questions, n, seed=3) == (rest, held_out)


def test_validation_split_of_the_wrong_size_is_one_line():
    questions = [Question("Where was A born?", "X", "t:1"), Question("Where was B born?", "Y", "t:2")]
    for n in (0, 2, 5):
        with pytest.raises(FactlabError, match=r"^t.tsv: a validation split of \d needs between 1 and 1 questions"):
            validation_split(questions, n, source="t.tsv")


def test_language_modelling_reads_each_document_from_position_0(corpus_files):
    """objective "lm": the example is the document's first block_size characters, next-character prediction."""
    text = corpus_files["wiki"].read_text(encoding="utf-8")
    lm = CharCorruptionDataset(text, 64, objective="lm")
    for i in range(len(lm)):
        x, y = lm.example(i, random.Random(i))
        ids = lm.vocab.encode(lm.data[i][:64])
        assert x.tolist() == ids[:-1] and y.tolist() == ids[1:]


def test_span_objective_draws_as_the_course_does_and_mix_draws_both(corpus_files):
    text = corpus_files["wiki"].read_text(encoding="utf-8")
    span, mix = (CharCorruptionDataset(text, 64, objective=o) for o in ("span", "mix"))
    rng_a, rng_b = random.Random(5), random.Random(5)
    assert all(span.draw(d, rng_a) == span.corrupt(d, rng_b) for d in span.data)
    drawn = [mix.draw(mix.data[0], random.Random(seed)) for seed in range(40)]
    whole = mix.data[0][:64]
    assert whole in drawn and any(MASK_CHAR in d for d in drawn)
    assert drawn == [mix.draw(mix.data[0], random.Random(seed)) for seed in range(40)]
    with pytest.raises(FactlabError, match="objective 'clm': unknown"):
        CharCorruptionDataset(text, 64, objective="clm")
    for share in (0, 1):
        with pytest.raises(FactlabError, match=f"span share {share}: must be between 0 and 1"):
            CharCorruptionDataset(text, 64, objective="mix", span_share=share)


def test_salient_spans_are_runs_of_capitalised_words_other_than_the_persons_name():
    doc = "Ann Lee. Born in Glasgow, Lee met Bo Ek in Columbus, Ohio and Łódź on 3 May in New York City ."
    assert [doc[a:b] for a, b in salient_spans(doc, len(doc))] == ["Glasgow", "Bo Ek", "Columbus, Ohio", "Łódź",
                                                                  "May", "New York City"]
    assert [doc[a:b] for a, b in salient_spans(doc, doc.index("York") + 2)] == ["Glasgow", "Bo Ek",
                                                                                "Columbus, Ohio", "Łódź", "May"]
    assert [doc[a:b] for a, b in salient_spans(doc, doc.index("Ohio") + 4)][-1] == "Columbus, Ohio"
    assert salient_spans("Ann Lee. He was born in a town .", 64) == ()


def test_salient_masking_masks_one_salient_span_and_keeps_the_rest(corpus_files):
    """With salient_share 1 every draw of a document with salient spans is its first longest_span_draw
    characters with one such span moved behind the second ⁇; each span is drawn; documents without one fall back
    to the course's random span; share 0 draws the course's random numbers."""
    doc = "Ann Lee. Ann Lee was born in Oslo and met Bo Ek in Rome in the spring of that year, by the sea ."
    block = 64
    dataset = CharCorruptionDataset(doc + "\n", block, salient_share=1.0)
    kept = doc[:longest_span_draw(block)]
    seen = set()
    for seed in range(60):
        prefix, suffix, masked = dataset.draw(doc, random.Random(seed)).split(MASK_CHAR)
        assert prefix + masked + suffix == kept and prefix.endswith(" ") and masked in ("Oslo", "Bo Ek", "Rome")
        seen.add(masked)
    assert seen == {"Oslo", "Bo Ek", "Rome"}
    plain = "Ann Lee. he was born in a town by the sea ."
    after_coin = random.Random(3)
    after_coin.random()  # the draw's salient-or-not coin comes first
    assert CharCorruptionDataset(plain + "\n", block, salient_share=1.0).draw(plain, random.Random(3)) == \
        dataset.corrupt(plain, after_coin)
    text = corpus_files["wiki"].read_text(encoding="utf-8")
    course, off = CharCorruptionDataset(text, 64), CharCorruptionDataset(text, 64, salient_share=0.0)
    rng_a, rng_b = random.Random(5), random.Random(5)
    assert all(off.draw(d, rng_a) == course.corrupt(d, rng_b) for d in course.data)
    for share, objective in ((1.5, "span"), (-0.1, "mix"), (0.5, "lm")):
        with pytest.raises(FactlabError, match=f"salient share {share}: must be between 0 and 1"):
            CharCorruptionDataset(text, 64, objective=objective, salient_share=share)


@pytest.mark.parametrize("objective,salient_share", [("span", 0.5), ("span", 1.0), ("mix", 0.3)])
def test_chance_draw_holds_counts_salient_draws(objective, salient_share):
    """A salient draw keeps the first longest_span_draw characters: the exact chance against 4,000 draws."""
    block = 32
    document = "Ann Lee. Born in Oslo, Ann Lee lived by the sea for many years ."
    dataset = CharCorruptionDataset(document + "\n", block, objective=objective, salient_share=salient_share)
    rng = random.Random(0)
    draws = [dataset.draw(document, rng) for _ in range(4000)]
    for end in (4, 20, 28, 29, 33):
        p = chance_draw_holds(end, block, objective, MIX_SPAN_SHARE, salient_share)
        share = sum(holds_prefix(text, document[:end]) for text in draws) / len(draws)
        assert abs(share - p) <= 4 * (p * (1 - p) / len(draws)) ** 0.5 + 1e-9, (objective, end, p, share)
    assert chance_draw_holds(28, block, "span", salient_share=1.0) == 1.0
    assert chance_draw_holds(28, block, "span", salient_share=1.0, salient=False) == chance_draw_holds(28, block,
                                                                                                      "span")


def test_question_mixture_makes_its_share_of_every_epoch(corpus_files):
    """Every document once an epoch and share/(1-share) × documents question examples, round the questions."""
    wiki = CharCorruptionDataset(corpus_files["wiki"].read_text(encoding="utf-8"), 128)
    questions = NameDataset(wiki, corpus_files["train"].read_text(encoding="utf-8"))
    mixture = QuestionMixture(wiki, questions, 0.5)
    assert len(mixture) == 2 * len(wiki)
    n = len(questions)
    for k in (0, n - 1, n, n + 3):  # past the last question it starts again at the first
        x, y = mixture.example(len(wiki) + k, random.Random(0))
        assert torch.equal(x, questions.example(k % n)[0]) and int((y == PAD_ID).sum()) > 0
    assert len(QuestionMixture(wiki, questions, n / (n + len(wiki)))) == len(wiki) + n
    for share in (0, 1, 1.5):
        with pytest.raises(FactlabError, match="must be between 0 and 1"):
            QuestionMixture(wiki, questions, share)


@pytest.mark.parametrize("objective,span_share", [("span", 0.5), ("lm", 0.5), ("mix", 0.5), ("mix", 0.15)])
def test_chance_draw_holds_is_the_share_of_draws_that_keep_the_prefix(objective, span_share):
    """chance_draw_holds(end) is how often a pretraining draw holds a document's first `end` characters: the
    exact chance, against the share of 4,000 draws (within 4 standard errors)."""
    block = 32
    document = "".join(chr(ord("a") + i % 26) for i in range(60))
    dataset = CharCorruptionDataset(document + "\n", block, objective=objective, span_share=span_share)
    rng = random.Random(0)
    draws = [dataset.draw(document, rng) for _ in range(4000)]
    if objective == "mix":  # the share of span corruption draws (those with a ⁇) is span_share
        spans = sum(MASK_CHAR in text for text in draws)
        assert abs(spans / len(draws) - span_share) <= 4 * (span_share * (1 - span_share) / len(draws)) ** 0.5
    for end in (1, 4, 10, 20, 28, 29, 32, 33, 50):
        p = chance_draw_holds(end, block, objective, span_share)
        share = sum(holds_prefix(text, document[:end]) for text in draws) / len(draws)
        assert abs(share - p) <= 4 * (p * (1 - p) / len(draws)) ** 0.5 + 1e-9, (objective, end, p, share)
    assert chance_draw_holds(29, block, "span") == 0.0 and chance_draw_holds(32, block, "lm") == 1.0
    assert chance_draw_holds(33, block, "lm") == 0.0
    with pytest.raises(FactlabError, match="unknown"):
        chance_draw_holds(4, block, "masked")


def holds_prefix(text: str, prefix: str) -> bool:
    """Whether a drawn text holds `prefix` (a span corruption's text `a ⁇ c ⁇ b` holds the document a + b + c)."""
    if MASK_CHAR not in text:
        return text.startswith(prefix)
    before, after, masked = text.split(MASK_CHAR)
    return (before + masked + after).startswith(prefix)
