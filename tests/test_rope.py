"""The 2024 handout's rotary position embeddings (variant "rope"): the rotation against a direct implementation
of the handout's block-rotation matrix and its complex form, the relative-position property, and the model:
no learned position embedding, causal, rotated in every layer."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from factlab.model import GPT, GPTConfig, rotary_tables, rotate

PROPERTY = settings(max_examples=30, deadline=None)


def block_rotation_matrix(t: int, d: int) -> torch.Tensor:
    """The handout's R_t: block-diagonal, block i = [[cos tθ_i, -sin tθ_i], [sin tθ_i, cos tθ_i]],
    θ_i = 10000^(-2(i-1)/d) for i = 1..d/2, written out entry by entry."""
    R = torch.zeros(d, d, dtype=torch.float64)
    for i in range(1, d // 2 + 1):
        theta = 10000 ** (-2 * (i - 1) / d)
        c, s = math.cos(t * theta), math.sin(t * theta)
        r = 2 * (i - 1)
        R[r, r], R[r, r + 1], R[r + 1, r], R[r + 1, r + 1] = c, -s, s, c
    return R


def test_rotation_is_the_handouts_block_rotation_matrix():
    """rotate(x) at position t equals R_t x for every position and head, and the complex element-wise form
    (x_2i + i x_2i+1) e^{i t θ_i} gives the same numbers."""
    T, hs = 12, 8
    cos, sin = rotary_tables(T, hs)
    x = torch.randn(2, 3, T, hs, generator=torch.Generator().manual_seed(0))
    got = rotate(x, cos, sin).double()
    for t in range(T):
        expected = x[:, :, t].double() @ block_rotation_matrix(t, hs).T
        torch.testing.assert_close(got[:, :, t], expected, atol=1e-5, rtol=1e-5)
    theta = 10000 ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    phases = torch.polar(torch.ones(T, hs // 2, dtype=torch.float64), torch.arange(T)[:, None] * theta)
    complex_form = torch.view_as_real(torch.view_as_complex(x.double().unflatten(-1, (-1, 2)).contiguous())
                                      * phases).flatten(-2)
    torch.testing.assert_close(got, complex_form, atol=1e-5, rtol=1e-5)


@PROPERTY
@given(t1=st.integers(0, 60), t2=st.integers(0, 60), shift=st.integers(0, 60), seed=st.integers(0, 100))
def test_inner_product_depends_only_on_the_offset(t1, t2, shift, seed):
    """<RoPE(z1, t1), RoPE(z2, t2)> = <RoPE(z1, t1 + s), RoPE(z2, t2 + s)>: only t1 - t2 matters."""
    hs = 16
    cos, sin = rotary_tables(130, hs)
    z = torch.randn(2, hs, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float()

    def dot(a, b):
        r1 = rotate(z[0].view(1, 1, 1, hs), cos[a : a + 1], sin[a : a + 1])
        r2 = rotate(z[1].view(1, 1, 1, hs), cos[b : b + 1], sin[b : b + 1])
        return float((r1 * r2).sum())

    assert dot(t1, t2) == pytest.approx(dot(t1 + shift, t2 + shift), abs=1e-4)


def test_rope_model_has_no_position_embedding_and_is_causal():
    config = GPTConfig(vocab_size=30, block_size=32, n_layer=2, n_head=2, n_embd=16, variant="rope", dropout=0.0)
    model = GPT(config).eval()
    names = dict(model.named_parameters())
    assert "pos_emb" not in names and "pos_emb" not in model.state_dict()
    vanilla = GPT(GPTConfig(vocab_size=30, block_size=32, n_layer=2, n_head=2, n_embd=16, dropout=0.0))
    assert vanilla.num_parameters() - model.num_parameters() == 32 * 16
    x = torch.randint(2, 30, (2, 20), generator=torch.Generator().manual_seed(1))
    changed = x.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % 28 + 2
    with torch.no_grad():
        a, b = model(x)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_rope_sees_the_order_of_earlier_tokens():
    """Without a position embedding, causal attention over the same set of earlier tokens is blind to their order;
    the rotation is what tells them apart: swapping two earlier tokens changes the last position's output."""
    config = GPTConfig(vocab_size=30, block_size=32, n_layer=1, n_head=2, n_embd=16, variant="rope", dropout=0.0)
    torch.manual_seed(0)
    model = GPT(config).eval()
    x = torch.tensor([[7, 9, 11, 13, 5]])
    swapped = torch.tensor([[9, 7, 11, 13, 5]])
    with torch.no_grad():
        assert not torch.allclose(model(x)[0][0, -1], model(swapped)[0][0, -1], atol=1e-6)


def test_odd_head_size_is_refused():
    with pytest.raises(ValueError, match="even"):
        GPTConfig(vocab_size=30, block_size=32, n_layer=1, n_head=2, n_embd=6, variant="rope")
