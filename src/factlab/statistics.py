"""The statistics of the results: intervals for an accuracy, risk–coverage of a confidence, the tests of the
nearest-name hypothesis, and calibration (reliability bins, ECE, Platt scaling). Plain functions of numbers and lists; what the numbers mean for factlab's answers is
said where they are used (analysis.py's docstring defines the JSON fields built from them)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
PERMUTATIONS = 10_000  # match_test's default: p-values down to 1e-4


def proportion(k: int, n: int) -> float | None:
    """k / n, or None for n = 0 (no observations: no rate, rather than a made-up 0)."""
    return k / n if n else None


def mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion correct/total (Wilson 1927; Newcombe 1998, method 3):

        centre = (p + z²/2n) / (1 + z²/n),   half-width = z / (1 + z²/n) · sqrt(p(1 - p)/n + z²/4n²)

    Unlike p ± z·sqrt(p(1-p)/n), it stays inside [0, 1] and is not empty at 0 or n correct.
    """
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total and total > 0, got {correct}/{total}")
    n, p = total, correct / total
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # The interval always contains p; the clamps undo rounding, which at 0 or n correct can leave p just outside
    # (a lower end of 1e-17 for 0 correct), and matplotlib's error bars refuse a negative length.
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def risk_coverage(confidences: list[float], correct: list[bool]) -> dict:
    """Accuracy among the k most confident answers for every k (ties in the given order), AURC, and accuracy at
    50% coverage, with what a random and the best order would give."""
    n = len(confidences)
    if n == 0:
        raise ValueError("risk-coverage of no questions")
    order = sorted(range(n), key=lambda i: (-confidences[i], i))
    hits = np.cumsum([bool(correct[i]) for i in order])
    k = np.arange(1, n + 1)
    accuracy = hits / k
    total = int(hits[-1])
    oracle = np.where(k <= total, 0.0, (k - total) / k)
    half = math.ceil(n / 2)
    # No order can put more than min(total, half) correct answers in the confident half. While accuracy is at most
    # 50%, that makes 2x the ceiling of accuracy_at_50 / accuracy_full, reached only when every correct answer is
    # ranked in that half: `correct_in_top_half` out of `total` says how close a confidence comes.
    return {
        "coverage": (k / n).tolist(),
        "accuracy": accuracy.tolist(),
        "aurc": float(np.mean(1 - accuracy)),
        "aurc_random": 1 - total / n,
        "aurc_oracle": float(np.mean(oracle)),
        "accuracy_at_50": float(accuracy[half - 1]),
        "accuracy_full": total / n,
        "threshold_at_50": float(confidences[order[half - 1]]),
        "accuracy_at_50_best": min(total, half) / half,
        "correct_in_top_half": int(hits[half - 1]),
    }


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test of two scorers on the same questions: the chance, if either were as likely
    to be the one right where they disagree, of a split of the disagreements at least this uneven
    (2 · P(X <= min) for X ~ Binomial(only_a + only_b, 1/2), capped at 1)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def poisson_binomial_tail(probs: list[float], k: int) -> float:
    """P(X >= k) for X a sum of independent Bernoulli(p_i)."""
    dist = np.zeros(len(probs) + 1)
    dist[0] = 1.0
    for p in probs:
        dist[1:] = dist[1:] * (1 - p) + dist[:-1] * p
        dist[0] *= 1 - p
    return float(min(1.0, dist[k:].sum()))


def match_test(predictions: list[str], nearest: list[str], train_freq: dict[str, float], seed: int = 0,
               permutations: int = PERMUTATIONS) -> dict:
    """How often prediction == nearest answer, against two baselines with one-sided p-values: predictions drawn
    independently from `train_freq` (exact Poisson-binomial tail), and the predictions shuffled among the same
    questions (exact expectation; p-value from `permutations` seeded permutations)."""
    n = len(predictions)
    matches = sum(p == q for p, q in zip(predictions, nearest))
    result = {"n": n, "matches": matches, "rate": proportion(matches, n), "expected_train_frequencies": None,
              "p_value_train_frequencies": None, "expected_permutation": None, "p_value_permutation": None,
              "permutations": permutations}
    if n == 0:
        return result
    chance = [train_freq.get(q, 0.0) for q in nearest]
    pred_count, near_count = Counter(predictions), Counter(nearest)
    result["expected_train_frequencies"] = sum(chance) / n
    result["p_value_train_frequencies"] = poisson_binomial_tail(chance, matches)
    result["expected_permutation"] = sum(c * near_count[p] for p, c in pred_count.items()) / n / n
    codes = {p: i for i, p in enumerate(set(predictions) | set(nearest))}
    pred = np.array([codes[p] for p in predictions])
    near = np.array([codes[q] for q in nearest])
    rng = np.random.default_rng(seed)
    at_least = 0
    for start in range(0, permutations, 1000):
        rows = min(1000, permutations - start)
        shuffled = rng.permuted(np.tile(pred, (rows, 1)), axis=1)
        at_least += int(((shuffled == near).sum(axis=1) >= matches).sum())
    result["p_value_permutation"] = (1 + at_least) / (1 + permutations)
    return result


# ---------------------------------------------------------------- calibration

CALIBRATION_BINS = 10  # equal-width confidence bins of the reliability diagram and the ECE


def reliability(confidences: list[float], correct: list[bool], bins: int = CALIBRATION_BINS) -> list[dict]:
    """The reliability diagram's bins, [i/bins, (i+1)/bins) (the last one closed): how many answers fall in each,
    their mean confidence and their accuracy (None for an empty bin)."""
    rows = [{"low": i / bins, "high": (i + 1) / bins, "n": 0, "confidence": None, "accuracy": None}
            for i in range(bins)]
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, p in enumerate(confidences):
        members[min(bins - 1, int(p * bins))].append(i)
    for row, idx in zip(rows, members):
        if idx:
            row.update(n=len(idx), confidence=float(np.mean([confidences[i] for i in idx])),
                       accuracy=float(np.mean([correct[i] for i in idx])))
    return rows


def expected_calibration_error(confidences: list[float], correct: list[bool], bins: int = CALIBRATION_BINS
                               ) -> float:
    """ECE (Naeini et al. 2015; Guo et al. 2017): the answers' share in each bin times |accuracy - confidence|
    there, summed over the bins."""
    n = len(confidences)
    return float(sum(r["n"] / n * abs(r["accuracy"] - r["confidence"]) for r in reliability(confidences, correct, bins)
                     if r["n"]))


def _logit(p: list[float]):
    import torch

    p = torch.tensor(p, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    return torch.log(p) - torch.log1p(-p)


@dataclass(frozen=True)
class Platt:
    """Platt scaling of a confidence (Platt 1999; temperature scaling is the case b = 0, a = 1/T): the calibrated
    confidence is sigmoid(a · logit(p) + b). With a > 0 it keeps the answers' order, so risk–coverage is
    unchanged and only the stated probabilities move."""
    a: float
    b: float

    @classmethod
    def fit(cls, confidences: list[float], correct: list[bool]) -> Platt:
        """a and b of least log-loss on (confidence, correct) pairs: logistic regression on logit(p), by L-BFGS,
        with Platt's targets (n₊ + 1)/(n₊ + 2) for a right answer and 1/(n₋ + 2) for a wrong one in place of 1 and
        0, so that answers a confidence separates perfectly do not drive a to infinity."""
        import torch

        if len(set(correct)) < 2:
            raise ValueError("fitting a calibration needs both correct and wrong answers")
        right = sum(correct)
        wrong = len(correct) - right
        x = _logit(confidences)
        y = torch.tensor([(right + 1) / (right + 2) if c else 1 / (wrong + 2) for c in correct], dtype=torch.float64)
        ab = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([ab], max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

        def loss():
            optimizer.zero_grad()
            value = torch.nn.functional.binary_cross_entropy_with_logits(ab[0] * x + ab[1], y)
            value.backward()
            return value

        optimizer.step(loss)
        a, b = ab.detach().tolist()
        return cls(a, b)

    def __call__(self, confidences: list[float]) -> list[float]:
        import torch

        return torch.sigmoid(self.a * _logit(confidences) + self.b).tolist()
