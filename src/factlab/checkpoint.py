"""Checkpoints: safetensors files whose metadata carry the model config and vocabulary (the Hugging Face habit:
the config travels with the weights), written atomically, validated on load; course `.params` files import too.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from . import FactlabError
from .io import atomic_path
from .model import GPT, GPTConfig
from .vocab import MASK_CHAR, PAD_CHAR, Vocab

FORMAT = "factlab-1"
ROPE_BLOCK_KEY = "__rope_block_size__"  # a course rope file's block size, carried from import to config
SAFETENSORS_MAGIC_OFFSET = 8  # a safetensors file starts with an 8-byte header length, then '{'


def save(path: str | Path, model: GPT, vocab: Vocab, info: dict | None = None) -> None:
    metadata = {
        "format": FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "vocab": vocab.to_json(),
        "info": json.dumps(info or {}),
    }
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def read_config(path: str | Path) -> tuple[GPTConfig, Vocab, dict] | None:
    """Config, vocabulary and info of a factlab checkpoint, or None for a course `.params` file."""
    path = Path(path)
    if not path.is_file():
        raise FactlabError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise FactlabError(f"{path}: checkpoint file is empty")
    if not is_safetensors(path):
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise FactlabError(f"{path}: not a readable safetensors checkpoint ({err})") from None
    if meta.get("format") != FORMAT:
        raise FactlabError(f"{path}: safetensors file without factlab metadata (format {meta.get('format')!r})")
    return parse_metadata(path, meta)


def parse_metadata(path: Path, meta: dict) -> tuple[GPTConfig, Vocab, dict]:
    """The config, vocabulary and info of a checkpoint's metadata, each checked: one line per problem."""
    def field_json(name: str, required: bool = True):
        if name not in meta:
            if required:
                raise FactlabError(f"{path}: checkpoint metadata has no {name!r} entry")
            return {}
        try:
            return json.loads(meta[name])
        except json.JSONDecodeError as err:
            raise FactlabError(f"{path}: checkpoint metadata {name!r} is not JSON ({err.msg} at {err.pos})") from None

    raw, itos, info = field_json("config"), field_json("vocab"), field_json("info", required=False)
    if not isinstance(raw, dict):
        raise FactlabError(f"{path}: checkpoint metadata 'config' is not a JSON object")
    try:
        config = GPTConfig.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise FactlabError(f"{path}: checkpoint config is invalid ({err})") from None
    if not isinstance(itos, list) or not all(isinstance(c, str) and len(c) == 1 for c in itos):
        raise FactlabError(f"{path}: checkpoint vocabulary is not a list of single characters")
    if itos[:2] != [PAD_CHAR, MASK_CHAR]:
        raise FactlabError(f"{path}: checkpoint vocabulary does not start with PAD {PAD_CHAR!r} and MASK "
                           f"{MASK_CHAR!r} at ids 0 and 1")
    if len(set(itos)) != len(itos):
        repeated = sorted({c for c in itos if itos.count(c) > 1})
        raise FactlabError(f"{path}: checkpoint vocabulary repeats {''.join(repeated)!r}")
    if len(itos) != config.vocab_size:
        raise FactlabError(f"{path}: checkpoint vocabulary has {len(itos)} characters, its config says "
                           f"vocab_size {config.vocab_size}")
    if not isinstance(info, dict):
        raise FactlabError(f"{path}: checkpoint metadata 'info' is not a JSON object")
    return config, Vocab(tuple(itos)), info


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(SAFETENSORS_MAGIC_OFFSET + 1)
    return len(head) == SAFETENSORS_MAGIC_OFFSET + 1 and head[-1:] == b"{"


def check_compatible(path, found: GPTConfig, found_vocab: Vocab | None, wanted: GPTConfig, vocab: Vocab) -> None:
    """One line naming every difference between a checkpoint and the model the command asked for."""
    diffs = [f"{name} {getattr(found, name)!r} (asked for {getattr(wanted, name)!r})"
             for name in ("variant", "vocab_size", "block_size", "n_layer", "n_head", "n_embd", "bottleneck_dim",
                          "synthesizer_b")
             if getattr(found, name) != getattr(wanted, name)
             and not (name == "bottleneck_dim" and found.variant != "perceiver")
             and not (name == "synthesizer_b" and found.variant != "synthesizer")]
    if found_vocab is not None and found_vocab != vocab and found.vocab_size == wanted.vocab_size:
        changed = sum(a != b for a, b in zip(found_vocab.itos, vocab.itos))
        diffs.append(f"vocabulary ({changed} characters differ from the pretraining corpus)")
    if diffs:
        raise FactlabError(f"{path}: checkpoint does not match: " + "; ".join(diffs))


def load(path: str | Path, wanted: GPTConfig, vocab: Vocab) -> tuple[GPT, dict]:
    """A model with the weights of `path`, after checking it is the variant, size and vocabulary asked for."""
    path = Path(path)
    header = read_config(path)
    if header is None:
        state = load_course_params(path)
        found, found_vocab, info = config_from_course_state(state, wanted), None, {"source": "course .params"}
    else:
        found, found_vocab, info = header
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise FactlabError(f"{path}: truncated or corrupt checkpoint ({err})") from None
    check_compatible(path, found, found_vocab, wanted, vocab)
    model = GPT(replace(found, dropout=wanted.dropout))  # dropout is a training choice, not part of the weights
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise FactlabError(f"{path}: weights do not fit the model: {first}") from None
    return model, info


def load_course_params(path: Path) -> dict[str, torch.Tensor]:
    """A course checkpoint (torch.save of a minGPT state_dict), loaded without unpickling arbitrary objects and
    converted to factlab's names: the stored attention masks are dropped (SDPA masks on the fly) and the course
    synthesizer's B (shared by the heads, block_size - 1 columns) gets factlab's shape (1 x head size x block_size;
    the last column, which no input reaches, zero)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad pickle/zip: all mean "not a checkpoint"
        raise FactlabError(f"{path}: not a factlab or course checkpoint ({type(err).__name__}: "
                           f"{(str(err).splitlines() or [''])[0][:120]})") from None
    if not isinstance(state, dict) or "tok_emb.weight" not in state:
        raise FactlabError(f"{path}: not a course checkpoint (no tok_emb.weight in the state_dict)")
    # The masks are dropped (SDPA masks on the fly); so is the 2024 rope model's rotation cache, which factlab
    # computes from the sizes (its block size is kept for the config).
    rope = [v for k, v in state.items() if k.endswith(".attn.rope_cache")]
    state = {k: v for k, v in state.items() if not k.endswith((".attn.mask", ".attn.rope_cache"))}
    if rope and "pos_emb" not in state:
        state[ROPE_BLOCK_KEY] = torch.tensor(rope[0].size(0))
    for key in [k for k in state if k.endswith(".attn.w2") and state[k].dim() == 2]:
        block_size = state["pos_emb"].size(1)
        w2 = torch.zeros(1, state[key].size(0), block_size)
        w2[0, :, : state[key].size(1)] = state[key]
        state[key] = w2
        b2_key = key.replace("w2", "b2")
        state[b2_key] = torch.cat([state[b2_key], state[b2_key].new_zeros(block_size - state[b2_key].numel())])
    return state


def config_from_course_state(state: dict[str, torch.Tensor], wanted: GPTConfig) -> GPTConfig:
    """Sizes as stored in a course state_dict; the head count is not visible in the shapes, so it is taken
    from the config asked for (the course always used 8)."""
    vocab_size, n_embd = state["tok_emb.weight"].shape
    if ROPE_BLOCK_KEY in state:
        n_layer = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        return GPTConfig(vocab_size=vocab_size, block_size=int(state.pop(ROPE_BLOCK_KEY)), n_layer=n_layer,
                         n_head=wanted.n_head, n_embd=n_embd, variant="rope", dropout=wanted.dropout)
    if "down_block.C" in state:
        variant, n_layer = "perceiver", len({k.split(".")[1] for k in state if k.startswith("blocks.")}) + 2
    else:
        variant = "synthesizer" if "blocks.0.attn.w1.weight" in state else "vanilla"
        n_layer = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    bottleneck = state["down_block.C"].size(1) if variant == "perceiver" else wanted.bottleneck_dim
    return GPTConfig(vocab_size=vocab_size, block_size=state["pos_emb"].size(1), n_layer=n_layer,
                     n_head=wanted.n_head, n_embd=n_embd, variant=variant, bottleneck_dim=bottleneck,
                     dropout=wanted.dropout, synthesizer_b="shared")  # the course's code has one B
