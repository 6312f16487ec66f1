"""The report's figures: matplotlib PNGs as data: URLs, so the page needs no other file."""

from __future__ import annotations

import base64
import io

import torch
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure  # the Agg canvas, without pyplot's global state

from ..statistics import wilson_interval
from .runs import Run


def png(fig: Figure, tight: bool = True) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight" if tight else None)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def results_plot(runs: list[Run]) -> str:
    scored = [r for r in runs if r.row["total"]]
    fig = Figure(figsize=(7, 0.45 * len(scored) + 1.0), dpi=90)
    ax = fig.add_subplot()
    for y, run in enumerate(scored):
        lo, hi = wilson_interval(run.row["correct"], run.row["total"])
        p = run.row["correct"] / run.row["total"]
        ax.errorbar(100 * p, y, xerr=[[100 * (p - lo)], [100 * (hi - p)]], fmt="o", color="C0", capsize=4)
    ax.set_yticks(range(len(scored)), [r.label for r in scored])
    ax.invert_yaxis()
    ax.set_xlabel("dev exact match (%), with 95% Wilson interval")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def training_curves_plot(metrics: dict[str, list[dict]]) -> str:
    names = [n for n, steps in metrics.items() if any("loss" in s for s in steps)]
    fig = Figure(figsize=(4.2 * len(names), 3.2), dpi=90)
    for i, name in enumerate(names):
        steps = [s for s in metrics[name] if "loss" in s]
        ax = fig.add_subplot(1, len(names), i + 1)
        x = [s.get("step", j) for j, s in enumerate(steps)]
        ax.plot(x, [s["loss"] for s in steps], color="C0", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss", color="C0")
        ax.set_title(f"{name}\nfinal loss {steps[-1]['loss']:.3f}", fontsize=9)
        if all("lr" in s for s in steps):
            lr = ax.twinx()
            lr.plot(x, [s["lr"] for s in steps], color="C1", lw=1, ls="--")
            lr.set_ylabel("learning rate", color="C1")
    fig.tight_layout()
    return png(fig)


def risk_coverage_plot(curves: list[tuple[str, dict]]) -> str:
    fig = Figure(figsize=(6, 4), dpi=90)
    ax = fig.add_subplot()
    for label, rc in curves:
        ax.plot([100 * c for c in rc["coverage"]], [100 * a for a in rc["accuracy"]], label=label)
    ax.set_xlabel("coverage: % of questions answered, most confident first")
    ax.set_ylabel("accuracy on the answered questions (%)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, max(5.0, 105 * max((a for _, rc in curves for a in rc["accuracy"]), default=0)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig)


def reliability_plot(calibrations: list[tuple[str, dict]]) -> str:
    """Accuracy against mean confidence per bin, for each analysis (dashed: after its Platt scaling)."""
    fig = Figure(figsize=(5, 5), dpi=90)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    for label, cal in calibrations:
        for key, style, suffix in (("reliability", "-o", ""), ("reliability_calibrated", "--s", ", calibrated")):
            bins = [b for b in cal.get(key) or [] if b["n"]]
            if bins:
                ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], style, markersize=4,
                        label=f"{label}{suffix}")
    ax.set_xlabel("mean confidence in the bin")
    ax.set_ylabel("accuracy in the bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return png(fig)


MODULE_ROLES = {"down_block.attn": "latents ← input", "up_block.attn": "input ← latents"}


def token_label(ch: str) -> str:
    return {" ": "␣", "\n": "↵", "\t": "⇥"}.get(ch, ch)


def attention_figure(maps: list[tuple[str, torch.Tensor]], text: str, n_latents: int) -> str:
    """One row per attention module, one column per head; each panel is (queries x keys) for the one sequence,
    `text`, labelled by its characters. Panels are placed at fixed inch offsets: automatic layout of thousands of
    tick labels takes seconds."""
    chars = [token_label(c) for c in text]
    latents = [f"L{i}" for i in range(n_latents)]
    n_head = maps[0][1].size(1)
    n = max(len(chars), n_latents)
    cell = min(5.0, max(2.2, 0.1 * n))  # a panel's side, in inches
    fontsize = min(6.0, 0.9 * 72 * cell / n)  # points: one tick label per row and column
    left, gap, row_gap, top = 0.4, 0.15, 0.7, 0.3  # room for tick labels and titles, in inches
    width, height = left + n_head * (cell + gap), top + len(maps) * (cell + row_gap)
    fig = Figure(figsize=(width, height), dpi=90)
    for row, (name, weights) in enumerate(maps):
        role = f" ({MODULE_ROLES[name]})" if name in MODULE_ROLES else ""
        for h in range(n_head):
            w = weights[0, h].cpu().numpy()
            bottom = height - top - (row + 1) * (cell + row_gap) + row_gap
            ax = fig.add_axes(((left + h * (cell + gap)) / width, bottom / height, cell / width, cell / height))
            ax.imshow(w, cmap="viridis", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0), aspect="auto",
                      interpolation="nearest")
            if h == 0:  # the heads of a row share their queries and keys: one set of labels (they are slow to draw)
                rows = chars if w.shape[0] == len(chars) else latents
                cols = chars if w.shape[1] == len(chars) else latents
                ax.set_yticks(range(len(rows)), rows, fontsize=fontsize)
                ax.set_xticks(range(len(cols)), cols, fontsize=fontsize, rotation=90)
                ax.tick_params(length=0, pad=1)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_title(f"{name}{role} head {h}", fontsize=8)
    return png(fig, tight=False)
