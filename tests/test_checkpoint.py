"""factlab.checkpoint: safetensors round trip, config/vocab metadata, one-line errors for mismatched, truncated
or foreign files, atomic saves, and import of the course's `.params` files."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch
from safetensors.torch import save_file

from conftest import make_model, tiny_config
from factlab import FactlabError, checkpoint
from factlab import course_reference as course
from factlab.decode import answer_questions, prompt_ids
from factlab.model import GPT, GPTConfig
from factlab.vocab import Vocab


@pytest.fixture()
def saved(tmp_path, vocab):
    """A tiny random vanilla model saved to tmp_path/model.params."""
    model = make_model(tiny_config(len(vocab)), seed=4).eval()
    path = tmp_path / "model.params"
    checkpoint.save(path, model, vocab, {"stage": "test", "steps": 3})
    return path, model


def one_line_error(excinfo, path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_round_trip_weights_and_logits(saved, vocab):
    """load(save(model)) has an identical state_dict and identical logits."""
    path, model = saved
    loaded, info = checkpoint.load(path, model.config, vocab)
    assert info == {"stage": "test", "steps": 3}
    assert loaded.config == model.config
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    x = torch.randint(0, len(vocab), (2, 40), generator=torch.Generator().manual_seed(0))
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model(x)[0])


@pytest.mark.parametrize("variant", ["synthesizer", "perceiver", "rope"])
def test_round_trip_other_variants(tmp_path, vocab, variant):
    """The synthesizer's w2/b2 and the perceiver's C and extra blocks survive the round trip too."""
    model = make_model(tiny_config(len(vocab), variant), seed=5)
    checkpoint.save(tmp_path / "m.params", model, vocab)
    loaded, _ = checkpoint.load(tmp_path / "m.params", model.config, vocab)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_metadata_carries_config_and_vocab(saved, vocab):
    """The file itself says which variant, sizes and vocabulary it holds."""
    path, model = saved
    config, stored_vocab, info = checkpoint.read_config(path)
    assert config == model.config
    sizes = (config.variant, config.n_layer, config.n_head, config.n_embd, config.block_size)
    assert sizes == ("vanilla", 2, 2, 32, 64)
    assert stored_vocab == vocab and stored_vocab.itos[:2] == ("\u25a1", "\u2047")
    assert info["stage"] == "test"


@pytest.mark.parametrize("change, words", [
    ({"variant": "synthesizer"}, ["variant", "'vanilla'", "'synthesizer'"]),
    ({"n_layer": 3}, ["n_layer", "2", "3"]),
    ({"n_embd": 48}, ["n_embd", "32", "48"]),
    ({"block_size": 128}, ["block_size", "64", "128"]),
])
def test_mismatched_config_is_one_line_naming_the_difference(saved, vocab, change, words):
    path, model = saved
    with pytest.raises(FactlabError) as err:
        checkpoint.load(path, dataclasses.replace(model.config, **change), vocab)
    message = one_line_error(err, path)
    assert all(w in message for w in words), message


def test_vocabulary_of_another_corpus(saved, vocab):
    """Same size but different characters -> 'vocabulary' mismatch; different size -> vocab_size mismatch."""
    path, model = saved
    same_size = Vocab(vocab.itos[:-1] + ("\u00e9",))
    with pytest.raises(FactlabError) as err:
        checkpoint.load(path, model.config, same_size)
    assert "vocabulary" in one_line_error(err, path)
    bigger = Vocab(vocab.itos + ("\u00e9",))
    with pytest.raises(FactlabError) as err:
        checkpoint.load(path, dataclasses.replace(model.config, vocab_size=len(bigger)), bigger)
    assert "vocab_size" in one_line_error(err, path)


@pytest.mark.parametrize("cut", ["half", "inside the header", "empty"])
def test_truncated_file(saved, vocab, cut):
    """A checkpoint cut short (in half, inside the header, to nothing) -> FactlabError naming the file."""
    path, model = saved
    data = path.read_bytes()
    path.write_bytes(data[: {"half": len(data) // 2, "inside the header": 20, "empty": 0}[cut]])
    with pytest.raises(FactlabError) as err:
        checkpoint.load(path, model.config, vocab)
    one_line_error(err, path)


@pytest.mark.parametrize("brace", [False, True])
def test_random_bytes_file(tmp_path, vocab, brace):
    """Random bytes (also with the safetensors '{' at offset 8) -> FactlabError naming the file."""
    data = bytearray(random.Random(0).randbytes(4096))
    data[8] = ord("{") if brace else ord("x")
    path = tmp_path / "junk.params"
    path.write_bytes(bytes(data))
    with pytest.raises(FactlabError) as err:
        checkpoint.load(path, tiny_config(len(vocab)), vocab)
    one_line_error(err, path)


def test_missing_file_and_foreign_safetensors(tmp_path, vocab):
    with pytest.raises(FactlabError) as err:
        checkpoint.load(tmp_path / "nope.params", tiny_config(len(vocab)), vocab)
    one_line_error(err, tmp_path / "nope.params")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(FactlabError) as err:
        checkpoint.load(foreign, tiny_config(len(vocab)), vocab)
    one_line_error(err, foreign)


def test_save_is_atomic(saved, vocab, monkeypatch):
    """A failure while writing is one line naming the file, and leaves the existing checkpoint byte-identical and
    no temporary file behind."""
    path, _ = saved
    before = path.read_bytes()
    other = make_model(tiny_config(len(vocab)), seed=9)

    def broken_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken_save_file)
    with pytest.raises(FactlabError, match=f"{path.name}: cannot write \\(disk full\\)"):
        checkpoint.save(path, other, vocab)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    monkeypatch.undo()
    checkpoint.save(path, other, vocab)  # and a successful save does replace it
    assert path.read_bytes() != before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# ---------------------------------------------------------------- course .params files


def course_params(tmp_path, vocab, synthesizer: bool, block_size: int = 96):
    config = course.CourseConfig(len(vocab), block_size, n_layer=2, n_head=2, n_embd=32, synthesizer=synthesizer)
    torch.manual_seed(0)
    model = course.randomize(course.GPT(config), seed=1)
    path = tmp_path / "course.params"
    torch.save(model.state_dict(), path)
    assert any(k.endswith("attn.mask") for k in torch.load(path, weights_only=True))
    wanted = GPTConfig(len(vocab), block_size, n_layer=2, n_head=2, n_embd=32,
                       variant="synthesizer" if synthesizer else "vanilla")
    return model, path, wanted


@pytest.mark.parametrize("synthesizer", [False, True])
def test_course_params_give_course_logits(tmp_path, vocab, synthesizer):
    """A torch.save'd course minGPT (vanilla or synthesizer) loads, and gives the course model's logits."""
    reference, path, wanted = course_params(tmp_path, vocab, synthesizer)
    model, info = checkpoint.load(path, wanted, vocab)
    assert info == {"source": "course .params"}
    model.eval()
    generator = torch.Generator().manual_seed(2)
    for length in (95, 40, 1):  # the course synthesizer only covers block_size - 1 positions
        x = torch.randint(0, len(vocab), (3, length), generator=generator)
        with torch.no_grad():
            torch.testing.assert_close(model(x)[0], reference(x)[0], rtol=0, atol=1e-5)


def test_course_params_give_course_greedy_answers(tmp_path, vocab, corpus):
    """factlab.decode on the imported weights answers exactly like the course's greedy sampling loop."""
    reference, path, wanted = course_params(tmp_path, vocab, synthesizer=False)
    model, _ = checkpoint.load(path, wanted, vocab)
    questions = [line.split("\t")[0] for line in (corpus.dev + corpus.train).splitlines()][:20]
    itos = dict(enumerate(vocab.itos))
    expected = [course.greedy_answer(reference, vocab.stoi, itos, q) for q in questions]
    assert answer_questions(model, vocab, [prompt_ids(vocab, q) for q in questions]) == expected


def test_course_params_with_wrong_sizes(tmp_path, vocab):
    """Asking for other sizes than the course file holds -> one-line FactlabError naming the file."""
    _, path, wanted = course_params(tmp_path, vocab, synthesizer=False)
    for change in ({"n_layer": 4}, {"n_embd": 64}, {"variant": "synthesizer"}):
        with pytest.raises(FactlabError) as err:
            checkpoint.load(path, dataclasses.replace(wanted, **change), vocab)
        assert next(iter(change)) in one_line_error(err, path)


def test_dropout_asked_for_applies_to_loaded_model(saved, vocab):
    """Dropout is a training choice: finetuning with another dropout than the checkpoint's uses the one asked for."""
    path, model = saved
    loaded, _ = checkpoint.load(path, dataclasses.replace(model.config, dropout=0.3), vocab)
    assert loaded.config.dropout == 0.3 and loaded.drop.p == 0.3


def test_course_rope_params_load_as_rope(tmp_path, vocab):
    """A 2024 course rope file: the model's weights, no pos_emb, and each layer's rotation cache (block_size ×
    head_dim/2 × 2, the course's precompute_rotary_emb) beside its attention. factlab reads its sizes from the
    shapes (the block size from the cache), drops the cache (it computes the rotation itself) and gives the same
    logits as the model the weights came from."""
    config = GPTConfig(len(vocab), 48, n_layer=2, n_head=2, n_embd=32, variant="rope", dropout=0.0)
    torch.manual_seed(0)
    source = GPT(config).eval()
    state = dict(source.state_dict())
    assert not any("pos_emb" in k for k in state)
    for i in range(config.n_layer):
        state[f"blocks.{i}.attn.rope_cache"] = torch.randn(48, 32 // 2 // 2, 2)
    path = tmp_path / "rope.params"
    torch.save(state, path)
    with pytest.raises(FactlabError, match="block_size 48 \\(asked for 128\\)"):
        checkpoint.load(path, dataclasses.replace(config, block_size=128), vocab)
    with pytest.raises(FactlabError, match="variant 'rope' \\(asked for 'vanilla'\\)"):
        checkpoint.load(path, dataclasses.replace(config, variant="vanilla"), vocab)
    model, info = checkpoint.load(path, config, vocab)
    assert info == {"source": "course .params"} and model.config == config
    x = torch.randint(0, len(vocab), (2, 47), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)[0], source(x)[0], rtol=0, atol=0)


def test_synthesizer_b_travels_with_the_checkpoint(tmp_path, vocab):
    """A per-head synthesizer is saved and loaded as one; asking for the shared B instead is a one-line error naming
    the difference; a checkpoint written before the option existed (no synthesizer_b in its config) is per-head."""
    model = make_model(tiny_config(len(vocab), "synthesizer", synthesizer_b="per-head"), seed=2).eval()
    path = tmp_path / "per-head.params"
    checkpoint.save(path, model, vocab)
    assert checkpoint.read_config(path)[0].synthesizer_b == "per-head"
    with pytest.raises(FactlabError) as err:
        checkpoint.load(path, dataclasses.replace(model.config, synthesizer_b="shared"), vocab)
    assert "synthesizer_b 'per-head' (asked for 'shared')" in one_line_error(err, path)
    old = tmp_path / "before-the-option.params"
    config = {k: v for k, v in model.config.to_dict().items() if k != "synthesizer_b"}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(old),
              metadata={"format": checkpoint.FORMAT, "config": json.dumps(config), "vocab": vocab.to_json()})
    loaded, _ = checkpoint.load(old, model.config, vocab)
    x = torch.randint(0, len(vocab), (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x)[0], model(x)[0], rtol=0, atol=0)
