"""The 2024 handout's written questions on rotary position embeddings, checked numerically.

(a) The complex element-wise form of RoPE, (x_2i-1 + i x_2i) e^{i t θ_i}, equals the block-rotation matrix R_t
    applied to x, with θ_i = 10000^(-2(i-1)/d); factlab.model.rotate is checked against both.
(b) The inner product of two rotated vectors, <RoPE(z1, t1), RoPE(z2, t2)>, depends only on t1 - t2: for every
    offset, the spread of the inner products over all (t1, t2) pairs with that offset is at rounding level.
"""

from __future__ import annotations

import math

import torch

from ..model import ROPE_BASE, rotary_tables, rotate


def block_rotation(t: int, d: int) -> torch.Tensor:
    """The handout's R_t, entry by entry, in float64."""
    R = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        theta = ROPE_BASE ** (-2 * i / d)
        c, s = math.cos(t * theta), math.sin(t * theta)
        R[2 * i, 2 * i], R[2 * i, 2 * i + 1], R[2 * i + 1, 2 * i], R[2 * i + 1, 2 * i + 1] = c, -s, s, c
    return R


def complex_form(x: torch.Tensor, t: int) -> torch.Tensor:
    """(x_2i-1 + i x_2i) e^{i t θ_i} for a float64 vector x, back to real pairs."""
    d = x.numel()
    theta = ROPE_BASE ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.view_as_complex(x.view(-1, 2).contiguous())
    return torch.view_as_real(z * torch.polar(torch.ones_like(theta), t * theta)).flatten()


def run(dim: int, positions: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(dim, generator=g, dtype=torch.float64)
    z1, z2 = torch.randn(2, dim, generator=g, dtype=torch.float64)
    cos, sin = rotary_tables(positions, dim)
    matrix_vs_complex, model_vs_matrix = 0.0, 0.0
    for t in range(positions):
        by_matrix = block_rotation(t, dim) @ x
        matrix_vs_complex = max(matrix_vs_complex, float((by_matrix - complex_form(x, t)).abs().max()))
        by_model = rotate(x.float().view(1, 1, 1, dim), cos[t : t + 1], sin[t : t + 1]).double().flatten()
        model_vs_matrix = max(model_vs_matrix, float((by_model - by_matrix).abs().max()))
    rotated1 = torch.stack([block_rotation(t, dim) @ z1 for t in range(positions)])
    rotated2 = torch.stack([block_rotation(t, dim) @ z2 for t in range(positions)])
    dots = rotated1 @ rotated2.T  # dots[t1, t2]
    offsets = list(range(-(positions - 1), positions))
    by_offset = [torch.diagonal(dots, offset=-k) for k in offsets]  # t1 - t2 = k
    spread = [float(d.max() - d.min()) for d in by_offset]
    return {"experiment": "rope", "dim": dim, "positions": positions, "seed": seed, "base": ROPE_BASE,
            "max_abs_matrix_vs_complex": matrix_vs_complex, "max_abs_factlab_vs_matrix": model_vs_matrix,
            "offsets": offsets, "dot_by_offset": [float(d.mean()) for d in by_offset],
            "max_spread_within_offset": max(spread), "dot_range_over_offsets": float(dots.max() - dots.min()),
            "passed": matrix_vs_complex < 1e-9 and model_vs_matrix < 1e-5 and max(spread) < 1e-9}
