"""Mean training loss of each epoch, for several metrics files side by side: a markdown table and, with --plot,
a PNG of the curves. It reads the JSON lines that factlab's trainer writes (NAME.params.metrics.jsonl, or the
.partial of a run still going) and those of benchmarks/course_loop_curve.py; both carry step, epoch and loss.

    python benchmarks/epoch_losses.py runs/course-vanilla/vanilla.pretrain.params.metrics.jsonl.partial \
        results/course-h200-attempt1/course-loop-vanilla-fp32-cpu.metrics.jsonl --names factlab "the course's loop"

An epoch counts only where a file holds at least --min_steps of its steps, so that the last, unfinished epoch of a
run still going, or a file of the exported, thinned metrics, does not show the mean of a handful of batches.
`--window K` pools each epoch with the K - 1 before it (the mean of all rows of epochs e - K + 1 to e), so that the
thinned metrics kept in results/ (about one row in 15 for a 650-epoch run) still give a mean of enough batches:

    python benchmarks/epoch_losses.py results/course-vanilla/vanilla.pretrain.params.metrics.jsonl --window 10 --min_steps 8"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def epoch_means(path: Path, min_steps: int, window: int = 1) -> dict[int, tuple[float, float | None]]:
    """{epoch: (mean loss, learning rate at its last step)} for the epochs with at least min_steps steps; with a
    window of K, each epoch's mean pools the rows of epochs e - K + 1 to e (and min_steps counts them all)."""
    losses, rates = defaultdict(list), {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                epoch, loss = int(row["epoch"]), float(row["loss"])
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit(f"{path}: line {number}: not a metrics row with epoch and loss ({e})") from None
            losses[epoch].append(loss)
            rates[epoch] = row.get("lr")
    pooled = {e: [loss for k in range(e - window + 1, e + 1) for loss in losses.get(k, [])] for e in losses}
    return {e: (sum(v) / len(v), rates[e]) for e, v in sorted(pooled.items()) if len(v) >= min_steps}


def shown_epochs(means: list[dict], every: int, chosen: list[int] | None = None) -> list[int]:
    """The chosen epochs, else the first ten, every `every`-th after them; and each file's last."""
    epochs = sorted(set().union(*means))
    last = {max(m) for m in means if m}
    if chosen:
        return [e for e in epochs if e in chosen or e in last]
    return [e for e in epochs if e <= 10 or e % every == 0 or e in last]


def table(names: list[str], means: list[dict], every: int, chosen: list[int] | None = None) -> str:
    """The markdown table: epoch, the first file's learning rate, each file's mean loss."""
    lines = ["| epoch | lr | " + " | ".join(names) + " |", "| --- | --- |" + " --- |" * len(names)]
    for e in shown_epochs(means, every, chosen):
        lr = means[0].get(e, (None, None))[1]
        cells = [f"{m[e][0]:.3f}" if e in m else "–" for m in means]
        lines.append(f"| {e} | {f'{lr:.1e}' if lr is not None else '–'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(names: list[str], means: list[dict], out: Path) -> None:
    from matplotlib.figure import Figure  # only for --plot: the table needs no matplotlib

    fig = Figure(figsize=(6.4, 3.6), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    for name, m in zip(names, means):
        ax.plot(list(m), [loss for loss, _ in m.values()], lw=1.2, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss of the epoch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="+", type=Path, help="JSON-lines metrics files (step, epoch, loss)")
    parser.add_argument("--names", nargs="+", help="a column name for each file (default: the file names)")
    parser.add_argument("--every", type=int, default=10, help="after epoch 10, show every N-th epoch (default 10)")
    parser.add_argument("--epochs", nargs="+", type=int, help="show these epochs (and each file's last) instead")
    parser.add_argument("--min_steps", type=int, default=10,
                        help="an epoch with fewer steps in a file is left out of that file's column (default 10)")
    parser.add_argument("--window", type=int, default=1,
                        help="pool each epoch with the K - 1 before it, for thinned metrics files (default 1)")
    parser.add_argument("--plot", type=Path, help="also write the curves to this PNG")
    args = parser.parse_args(argv)
    names = args.names or [p.name for p in args.metrics]
    if len(names) != len(args.metrics):
        parser.error(f"--names gives {len(names)} names for {len(args.metrics)} files")
    for path in args.metrics:
        if not path.is_file():
            parser.error(f"{path}: no such file")
    if args.window < 1:
        parser.error(f"--window must be 1 or more, not {args.window}")
    means = [epoch_means(p, args.min_steps, args.window) for p in args.metrics]
    print(table(names, means, args.every, args.epochs))
    if args.plot:
        plot(names, means, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
