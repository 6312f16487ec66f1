"""Four small experiments on one attention read-out, c = Σ α_i v_i with α = softmax(K q), after the written
part of CS224N's assignment: copying one value, averaging two, and why one head cannot average two values when
a key is noisy but two heads can. Each function returns a JSON-ready dict of numbers (the plots read it too).

Keys and values are unit vectors (random, or orthonormal where the question says so); the maths is float64.
"""

from __future__ import annotations

import math

import torch

from .. import FactlabError


def attend(keys: torch.Tensor, values: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """keys (..., n, d), values (n, dv), q (..., d) -> (α (..., n), c (..., dv)). No 1/√d: the course's maths."""
    alpha = torch.softmax((keys @ q.unsqueeze(-1)).squeeze(-1), dim=-1)
    return alpha, alpha @ values


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def randn(*shape: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def orthonormal(n: int, d: int, g: torch.Generator) -> torch.Tensor:
    if n > d:
        raise FactlabError(f"{n} orthonormal keys need --dim >= {n} (got {d})")
    return torch.linalg.qr(randn(d, n, g=g)).Q.T  # (n, d), orthonormal rows


def check_keys(n_keys: int, *indices: int) -> None:
    if n_keys < 2:
        raise FactlabError(f"--n_keys must be at least 2 (got {n_keys})")
    if len(set(indices)) < len(indices) or not all(0 <= i < n_keys for i in indices):
        raise FactlabError(f"key indices {list(indices)} must be distinct and in 0..{n_keys - 1}")


def copy(n_keys: int = 8, dim: int = 64, scales=(0, 1, 2, 4, 8, 16, 32), alignments=(1.0, 0.9, 0.5, 0.0),
         target: int = 0, seed: int = 0) -> dict:
    """‖c − v_j‖ for q = s (a k_j + √(1 − a²) r), r a unit vector orthogonal to k_j: a is the cosine between q
    and k_j, s the norm of q. Random (not orthogonal) unit keys, so other keys compete."""
    check_keys(n_keys, target)
    if not all(-1 <= a <= 1 for a in alignments):
        raise FactlabError(f"alignments are cosines and must lie in [-1, 1] (got {list(alignments)})")
    g = torch.Generator().manual_seed(seed)
    keys, values = unit(randn(n_keys, dim, g=g)), unit(randn(n_keys, dim, g=g))
    k = keys[target]
    r = randn(dim, g=g)
    r = unit(r - (r @ k) * k)
    error, weight = [], []
    for a in alignments:
        direction = a * k + math.sqrt(1 - a * a) * r
        alpha, c = attend(keys, values, torch.tensor(scales, dtype=torch.float64)[:, None] * direction)
        error.append((c - values[target]).norm(dim=-1).tolist())
        weight.append(alpha[:, target].tolist())
    return {"experiment": "copy", "params": dict(n_keys=n_keys, dim=dim, target=target, seed=seed),
            "scales": list(scales), "alignments": list(alignments), "error": error, "weight_on_target": weight}


def average(n_keys: int = 8, dim: int = 64, scales=(0, 1, 2, 4, 8, 16, 32), a: int = 0, b: int = 1,
            seed: int = 0) -> dict:
    """‖c − (v_a + v_b)/2‖ for orthonormal keys and q = s (k_a + k_b). Then k_a·q = k_b·q = s and every other
    logit is 0, so α_a = α_b = e^s / (2e^s + n − 2) exactly."""
    check_keys(n_keys, a, b)
    g = torch.Generator().manual_seed(seed)
    keys, values = orthonormal(n_keys, dim, g), unit(randn(n_keys, dim, g=g))
    s = torch.tensor(scales, dtype=torch.float64)
    alpha, c = attend(keys, values, s[:, None] * (keys[a] + keys[b]))
    return {"experiment": "average", "params": dict(n_keys=n_keys, dim=dim, a=a, b=b, seed=seed),
            "scales": list(scales), "error": (c - (values[a] + values[b]) / 2).norm(dim=-1).tolist(),
            "weight_a": alpha[:, a].tolist(), "weight_b": alpha[:, b].tolist(),
            "predicted_weight": (torch.exp(s) / (2 * torch.exp(s) + n_keys - 2)).tolist()}


def sample_keys(means: torch.Tensor, alpha: float, samples: int, g: torch.Generator,
                stretched: int | None = None) -> torch.Tensor:
    """(samples, n, d) keys k_i ~ N(μ_i, αI); with `stretched` = a, k_a ~ N(μ_a, αI + ½ μ_a μ_aᵀ) instead:
    a unit μ_a times g/√2 (g ~ N(0, 1)) adds exactly ½ μ_a μ_aᵀ to the covariance, i.e. k_a's length wobbles."""
    keys = means + math.sqrt(alpha) * randn(samples, *means.shape, g=g)
    if stretched is not None:
        keys[:, stretched] += math.sqrt(0.5) * randn(samples, 1, g=g) * means[stretched]
    return keys


def spread(weights: torch.Tensor, distance: torch.Tensor, bins: int = 20) -> dict:
    """Summary of the weight on v_a over the samples, and of ‖c − (v_a + v_b)/2‖."""
    q = torch.quantile(weights, torch.tensor([0.05, 0.5, 0.95], dtype=weights.dtype)).tolist()
    return {"mean": weights.mean().item(), "std": weights.std().item(), "p5": q[0], "median": q[1], "p95": q[2],
            "near_half": ((weights - 0.5).abs() < 0.1).double().mean().item(),  # share with |w − ½| < 0.1
            "distance_mean": distance.mean().item(), "distance_p95": torch.quantile(distance, 0.95).item(),
            "histogram": torch.histc(weights.float(), bins=bins, min=0, max=1).int().tolist()}


def noisy_setup(n_keys, dim, seed):
    check_keys(n_keys, 0, 1)
    g = torch.Generator().manual_seed(seed)
    return g, orthonormal(n_keys, dim, g), unit(randn(n_keys, dim, g=g))


def noisy(n_keys: int = 8, dim: int = 64, scale: float = 10.0, alpha: float = 1e-4, samples: int = 2000,
          seed: int = 0) -> dict:
    """One head, q = s (μ_a + μ_b), keys sampled `samples` times, in two cases: every Σ_i = αI ("isotropic"),
    and Σ_a = αI + ½ μ_a μ_aᵀ ("stretched"). Reports the distribution of the weight on v_a (a = 0, b = 1)."""
    g, means, values = noisy_setup(n_keys, dim, seed)
    target, q = (values[0] + values[1]) / 2, scale * (means[0] + means[1])
    cases = {}
    for case, stretched in (("isotropic", None), ("stretched", 0)):
        w, c = attend(sample_keys(means, alpha, samples, g, stretched), values, q)
        cases[case] = spread(w[:, 0], (c - target).norm(dim=-1))
    return {"experiment": "noisy", "params": dict(n_keys=n_keys, dim=dim, scale=scale, alpha=alpha,
                                                  samples=samples, seed=seed), "cases": cases}


def two_heads(n_keys: int = 8, dim: int = 64, scale: float = 10.0, alpha: float = 1e-4, samples: int = 2000,
              seed: int = 0) -> dict:
    """The stretched key k_a of `noisy`, read by one head (q = s (μ_a + μ_b)) and by two heads (q1 = s μ_a,
    q2 = s μ_b, c = (c1 + c2)/2) on the same samples. A long or short k_a moves one head's α_a against α_b;
    each of the two heads has a single clear winner, so its length hardly matters, unless k_a·μ_a drops
    near or below 0 (k_a = μ_a (1 + g/√2) + noise: g < −√2 in 7.9% of draws); then head 1 has no clear winner
    and no scale s helps."""
    g, means, values = noisy_setup(n_keys, dim, seed)
    target = (values[0] + values[1]) / 2
    keys = sample_keys(means, alpha, samples, g, stretched=0)
    w, c = attend(keys, values, scale * (means[0] + means[1]))
    w1, c1 = attend(keys, values, scale * means[0])
    w2, c2 = attend(keys, values, scale * means[1])
    c12, w12 = (c1 + c2) / 2, (w1[:, 0] + w2[:, 0]) / 2
    return {"experiment": "two-heads", "params": dict(n_keys=n_keys, dim=dim, scale=scale, alpha=alpha,
                                                      samples=samples, seed=seed),
            "cases": {"one head": spread(w[:, 0], (c - target).norm(dim=-1)),
                      "two heads": spread(w12, (c12 - target).norm(dim=-1))},
            # the draws no scale can fix: k_a points away from μ_a, so head 1 prefers any other key to k_a
            "away_share": ((keys[:, 0] @ means[0]) < 0).double().mean().item()}
