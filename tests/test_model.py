"""factlab.model: the course's parameter count, causality of every variant, PAD-free loss, weight-decay groups,
and the synthesizer's math against a hand-written implementation."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from factlab.model import GPT, GPTConfig, SYNTHESIZER_B, SynthesizerAttention

V = 40  # vocabulary size of the random models below
PROPERTY = settings(max_examples=25, deadline=None)

# name -> (config, eval mode?). Train-mode variants use dropout 0 so that outputs are deterministic.
VARIANTS = {
    "vanilla": (GPTConfig(V, 64, n_layer=2, n_head=2, n_embd=32, dropout=0.0), False),
    "synthesizer": (GPTConfig(V, 64, n_layer=2, n_head=2, n_embd=32, variant="synthesizer", dropout=0.0), False),
    "perceiver": (GPTConfig(V, 64, n_layer=3, n_head=2, n_embd=32, variant="perceiver", bottleneck_dim=8,
                            dropout=0.0), False),
    "perceiver-wide": (GPTConfig(V, 16, n_layer=2, n_head=1, n_embd=16, variant="perceiver", bottleneck_dim=24,
                                 dropout=0.0), False),
    "rope": (GPTConfig(V, 64, n_layer=2, n_head=2, n_embd=32, variant="rope", dropout=0.0), False),
    "tiny": (GPTConfig(V, 8, n_layer=1, n_head=1, n_embd=8, dropout=0.0), False),
    "eval-dropout": (GPTConfig(V, 64, n_layer=2, n_head=4, n_embd=32, dropout=0.1), True),
    "synthesizer-eval": (GPTConfig(V, 32, n_layer=2, n_head=4, n_embd=32, variant="synthesizer"), True),
}
_MODELS: dict[str, GPT] = {}


def random_model(name: str) -> GPT:
    """A fixed random model per variant. The weights are much larger than the 0.02 initialisation (and biases,
    pos_emb, the synthesizer's w2/b2, the perceiver's C random too) so that any leak from a later position
    changes earlier logits far beyond the tolerance."""
    if name not in _MODELS:
        config, eval_mode = VARIANTS[name]
        torch.manual_seed(0)
        model = GPT(config)
        with torch.no_grad():
            for param_name, p in model.named_parameters():
                if ".ln" not in param_name and not param_name.startswith("ln_f"):
                    p.normal_(0, 1.0 if p.dim() < 2 or "emb" in param_name else 0.5)
        model.train(not eval_mode)
        _MODELS[name] = model
    return _MODELS[name]


def random_tokens(config: GPTConfig, length: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_course_parameter_count():
    """The course model (vocab 256, block 128, 4 layers, 8 heads, 256 dims) has exactly 3,323,392 parameters."""
    model = GPT(GPTConfig(vocab_size=256, block_size=128))
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) == 3_323_392


@pytest.mark.parametrize("name", VARIANTS)
@PROPERTY
@given(data=st.data())
def test_causal(name, data):
    """Changing token t changes no logit at positions < t (and does change the logits at t)."""
    model = random_model(name)
    config = model.config
    x = random_tokens(config, config.block_size)
    t = data.draw(st.integers(0, config.block_size - 1), label="t")
    token = data.draw(st.integers(0, V - 1).filter(lambda v: v != int(x[0, t])), label="token")
    changed = x.clone()
    changed[0, t] = token
    with torch.no_grad():
        before, _ = model(x)
        after, _ = model(changed)
    torch.testing.assert_close(after[0, :t], before[0, :t], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(after[0, t], before[0, t], atol=1e-3)
    torch.testing.assert_close(after[1], before[1], rtol=1e-6, atol=1e-6)  # other sequences are untouched


@PROPERTY
@given(data=st.data())
def test_a_perceiver_position_past_m_sees_only_itself_and_the_first_m_inputs(data):
    """The course's masks (latent i reads inputs <= i; position t reads latents <= t) let m latents read only
    the first m inputs. So the logits at a position t >= m depend on the inputs < m and on x_t (the residual)
    alone: changing any input between m and t leaves them as they were. This is why the course's perceiver
    cannot model text past its first m characters from context."""
    model = random_model("perceiver")
    m, T = model.config.bottleneck_dim, model.config.block_size
    x = random_tokens(model.config, T)
    s = data.draw(st.integers(m, T - 2), label="changed position")
    changed = x.clone()
    changed[0, s] = (x[0, s] + data.draw(st.integers(1, V - 1), label="shift")) % V
    with torch.no_grad():
        before, _ = model(x)
        after, _ = model(changed)
    torch.testing.assert_close(after[0, s + 1:], before[0, s + 1:], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(after[0, s], before[0, s], atol=1e-3)
    early = changed.clone()
    early[0, 0] = (x[0, 0] + 1) % V  # the first input, which every latent reads, reaches the last position
    with torch.no_grad():
        reached, _ = model(early)
    assert not torch.allclose(reached[0, T - 1], after[0, T - 1], atol=1e-3)


@pytest.mark.parametrize("name", VARIANTS)
@PROPERTY
@given(length=st.integers(1, 64))
def test_shorter_inputs_are_prefixes(name, length):
    """An input shorter than block_size works and gives the same logits as the prefix of a full-length input."""
    model = random_model(name)
    config = model.config
    length = min(length, config.block_size)
    x = random_tokens(config, config.block_size)
    with torch.no_grad():
        full, _ = model(x)
        short, loss = model(x[:, :length])
    assert short.shape == (2, length, V) and loss is None
    torch.testing.assert_close(short, full[:, :length], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_longer_than_block_size_raises(name):
    model = random_model(name)
    with pytest.raises(ValueError, match="block size"):
        model(random_tokens(model.config, model.config.block_size + 1))


@pytest.mark.parametrize("name", VARIANTS)
def test_loss_ignores_pad_targets(name):
    """The loss is the mean cross-entropy over the non-PAD targets only (PAD id 0)."""
    model = random_model(name)
    config = model.config
    x = random_tokens(config, config.block_size, batch=3)
    targets = random_tokens(config, config.block_size, batch=3, seed=2)
    targets[0, : config.block_size // 2] = 0
    targets[2, -3:] = 0
    with torch.no_grad():
        logits, loss = model(x, targets)
    keep = targets != 0
    by_hand = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(loss, by_hand)
    all_terms = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none")
    assert not torch.allclose(loss, all_terms.mean())  # the PAD positions really were left out


@pytest.mark.parametrize("name", ["vanilla", "synthesizer", "perceiver"])
def test_decay_parameters(name):
    """All nn.Linear weights (and the synthesizer's w2) decay; biases, LayerNorms, embeddings, pos_emb and the
    perceiver's C do not; the two groups partition the parameters."""
    model = random_model(name)
    decay, no_decay = model.decay_parameters()
    decay_ids, no_decay_ids = {id(p) for p in decay}, {id(p) for p in no_decay}
    assert len(decay_ids) == len(decay) and len(no_decay_ids) == len(no_decay)
    assert not decay_ids & no_decay_ids
    assert decay_ids | no_decay_ids == {id(p) for p in model.parameters()}
    for param_name, p in model.named_parameters():
        owner_name, _, leaf = param_name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        should_decay = (isinstance(owner, nn.Linear) and leaf == "weight") or leaf == "w2"
        assert (id(p) in decay_ids) == should_decay, param_name
    must_not = [model.tok_emb.weight, model.pos_emb, model.ln_f.weight, model.ln_f.bias]
    if name == "perceiver":
        must_not.append(model.down_block.C)
    assert all(id(p) in no_decay_ids for p in must_not)
    assert id(model.head.weight) in decay_ids
    if name == "synthesizer":
        assert all(id(b.attn.w2) in decay_ids and id(b.attn.b2) in no_decay_ids for b in model.blocks)


def reference_synthesizer(attn: SynthesizerAttention, x: torch.Tensor) -> torch.Tensor:
    """The handout's formula, head by head: softmax(ReLU(X A_i + b1) B_i + b2) (X V_i), causal, then proj."""
    B, T, d = x.shape
    hs = d // attn.n_head
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    heads = []
    for i in range(attn.n_head):
        rows = slice(i * hs, (i + 1) * hs)
        A_i, b1_i = attn.w1.weight[rows].T, attn.w1.bias[rows]
        V_i, bv_i = attn.value.weight[rows].T, attn.value.bias[rows]
        B_i = attn.w2[i if attn.w2.size(0) > 1 else 0, :, :T]  # B_i, or the B all heads share
        scores = torch.relu(x @ A_i + b1_i) @ B_i + attn.b2[:T]
        weights = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        heads.append(weights @ (x @ V_i + bv_i))
    return attn.proj(torch.cat(heads, dim=-1))


@pytest.mark.parametrize("T", [1, 7, 16])
@pytest.mark.parametrize("synthesizer_b", SYNTHESIZER_B)
def test_synthesizer_matches_handwritten_formula(T, synthesizer_b):
    """SynthesizerAttention (dropout 0, eval) equals the direct formula, with one B for all heads (the course's
    code) and with distinct B_i per head (the handout's formula)."""
    torch.manual_seed(3)
    config = GPTConfig(V, 16, n_layer=1, n_head=2, n_embd=8, variant="synthesizer", dropout=0.0,
                       synthesizer_b=synthesizer_b)
    attn = SynthesizerAttention(config, layer=0).eval()
    assert attn.w2.shape == (2 if synthesizer_b == "per-head" else 1, 4, 16)
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.7)
    x = torch.randn(3, T, 8)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), reference_synthesizer(attn, x), rtol=1e-5, atol=1e-5)


def test_config_validation():
    """GPTConfig rejects an unknown variant, n_embd not divisible by n_head, and a perceiver under 2 layers."""
    with pytest.raises(ValueError, match="variant"):
        GPTConfig(10, 16, variant="transformer-xl")
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(10, 16, n_head=3, n_embd=32)
    with pytest.raises(ValueError, match="n_layer"):
        GPTConfig(10, 16, n_layer=1, variant="perceiver")
    assert GPTConfig(10, 16, n_head=4, n_embd=32).to_dict()["n_embd"] == 32
