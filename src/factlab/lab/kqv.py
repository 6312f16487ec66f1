"""Key-query-value self-attention on three inputs built from orthogonal vectors u_a, u_b, u_c, u_d of norm β:
x1 = u_d + u_b, x2 = u_a, x3 = u_c + u_b. With k_i = K x_i, q_i = Q x_i, v_i = V x_i, the output is
c_i = Σ_j softmax_j(q_i · k_j) v_j (no 1/√d, no mask, as in the course's question).

The question asks for K, Q, V with c2 ≈ u_b and c1 ≈ u_b − u_c. The u's are β times the first four standard
basis vectors of R^d (d >= 4), so a file's matrices are written in that basis; they do not depend on β.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import FactlabError

A, B, C, D = range(4)  # u_a .. u_d are β e_0 .. β e_3


def units(dim: int) -> torch.Tensor:
    return torch.eye(dim, dtype=torch.float64)[:4]


def inputs(beta: float, dim: int) -> torch.Tensor:
    u = beta * units(dim)
    return torch.stack([u[D] + u[B], u[A], u[C] + u[B]])  # x1, x2, x3


def outer(i: int, j: int, dim: int) -> torch.Tensor:
    e = units(dim)
    return torch.outer(e[i], e[j])


def constructions(dim: int) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Named (K, Q, V). `identity` is the question's first case, k = q = v = x. `solution` keeps k = x and
    - Q maps u_a -> u_d and u_d -> u_c: query 2 (u_a) then matches x1 (which holds u_d), and query 1 (which
      holds u_d) matches x3 (which holds u_c), each with logit β² against 0 for the other inputs;
    - V keeps u_b and flips u_c: v1 = u_b, v3 = u_b − u_c.
    So c2 ≈ v1 = u_b and c1 ≈ v3 = u_b − u_c, up to a weight 2/(e^{β²} + 2) left on the other inputs."""
    eye = torch.eye(dim, dtype=torch.float64)
    return {
        "identity": (eye, eye, eye),
        "solution": (eye, outer(D, A, dim) + outer(C, D, dim), outer(B, B, dim) - outer(C, C, dim)),
    }


def targets(beta: float, dim: int) -> dict[str, torch.Tensor]:
    """The vectors a c_i is compared with: the u's, the inputs, the two goals and the averages of the inputs."""
    u = beta * units(dim)
    x1, x2, x3 = inputs(beta, dim)
    return {"0": torch.zeros(dim, dtype=torch.float64), "u_a": u[A], "u_b": u[B], "u_c": u[C], "u_d": u[D],
            "u_b + u_d (x1)": x1, "u_b + u_c (x3)": x3, "u_b - u_c": u[B] - u[C], "u_b - u_d": u[B] - u[D],
            "(x1 + x3)/2": (x1 + x3) / 2, "(x1 + x2 + x3)/3": (x1 + x2 + x3) / 3}


GOALS = {0: "u_b - u_c", 1: "u_b"}  # c1 and c2


def check(K, Q, V, beta: float, tolerance: float = 0.05) -> dict:
    """Self-attention outputs and, for each c_i, its nearest target and the relative distance to it. Passes when
    c1's nearest is u_b − u_c and c2's is u_b, each within `tolerance` (relative to the target's norm)."""
    dim = K.shape[0]
    x = inputs(beta, dim)
    k, q, v = x @ K.T, x @ Q.T, x @ V.T
    weights = torch.softmax(q @ k.T, dim=-1)
    c = weights @ v
    named = targets(beta, dim)
    rows, passed = [], True
    for i, ci in enumerate(c):
        distances = {name: (ci - t).norm().item() for name, t in named.items()}
        nearest = min(distances, key=distances.get)
        relative = distances[nearest] / max(named[nearest].norm().item(), beta)
        goal = GOALS.get(i)
        ok = goal is None or (nearest == goal and relative <= tolerance)
        passed &= ok
        rows.append({"c": f"c{i + 1}", "nearest": nearest, "relative_distance": relative, "goal": goal,
                     "ok": ok, "coordinates_over_beta": (ci / beta).tolist()})
    return {"beta": beta, "dim": dim, "tolerance": tolerance, "attention": weights.tolist(), "outputs": rows,
            "passed": passed}


def load(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """K, Q, V from a .json file {"K": [[...]], "Q": ..., "V": ...} or a .npy array of shape (3, d, d)."""
    path = Path(path)
    if not path.is_file():
        raise FactlabError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not {"K", "Q", "V"} <= data.keys():
                raise FactlabError(f'{path}: expected a JSON object with matrices "K", "Q" and "V"')
            mats = [np.asarray(data[name], dtype=np.float64) for name in "KQV"]
        elif path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            if array.ndim != 3 or array.shape[0] != 3:
                raise FactlabError(f"{path}: expected an array of shape (3, d, d) holding K, Q, V; got {array.shape}")
            mats = list(array.astype(np.float64))
        else:
            raise FactlabError(f"{path}: expected a .json or .npy file")
    except (ValueError, TypeError, OSError, UnicodeDecodeError) as err:  # bad JSON, ragged lists, bad .npy
        raise FactlabError(f"{path}: cannot read K, Q, V: {' '.join(str(err).split())}") from None
    dim = mats[0].shape[0] if mats[0].ndim == 2 else 0
    for name, m in zip("KQV", mats):
        if m.ndim != 2 or m.shape != (dim, dim) or dim < 4:
            raise FactlabError(f"{path}: {name} has shape {m.shape}; K, Q, V must all be d x d with d >= 4 "
                               f"(K is {mats[0].shape})")
        if not np.isfinite(m).all():
            raise FactlabError(f"{path}: {name} has non-finite entries")
    return tuple(torch.from_numpy(m) for m in mats)
