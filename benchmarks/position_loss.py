"""Pretraining loss by position: how well each checkpoint predicts the characters of span-corruption draws from
the corpus, position by position, as a markdown table of mean losses per band of positions. It shows where a
model's context stops helping: the course's perceiver, whose m latents read only the first m characters, is a
much weaker model past position m than before it.

    python benchmarks/position_loss.py --corpus $D/wiki.txt runs/course-vanilla/vanilla.pretrain.params \
        runs/course-perceiver/perceiver.pretrain.params

Every checkpoint sees the same draws (--draws of them, --seed): the course's span corruption of documents in
file order, each draw weighted by its characters that carry a loss (PAD targets carry none)."""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from factlab import FactlabError
from factlab.checkpoint import load, read_config
from factlab.data import CharCorruptionDataset
from factlab.io import read_text
from factlab.vocab import PAD_ID

BANDS = (0, 16, 32, 48, 64, 96)  # the first position of each band; the last band runs to the block's end


def position_losses(params: str, vocab, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed loss and the number of loss-carrying targets at each position, for one checkpoint (refused
    in one line unless its vocabulary is the corpus's)."""
    header = read_config(params)
    if header is None:
        raise FactlabError(f"{params}: not a factlab checkpoint (a course .params file has no config to read)")
    config = header[0]
    model, _ = load(params, config, vocab)
    model.eval()
    with torch.no_grad():
        logits, _ = model(x[:, :config.block_size])
    target = y[:, :config.block_size]
    loss = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=PAD_ID, reduction="none")
    counted = (target != PAD_ID).float()
    return (loss * counted).sum(0), counted.sum(0)


def table(names: list[str], sums: list[tuple[torch.Tensor, torch.Tensor]], bands=BANDS) -> list[str]:
    """One row per checkpoint, one column per band of positions (mean loss over the band's targets)."""
    block = max(len(s) for s, _ in sums)
    edges = [b for b in bands if b < block] + [block]
    heads = [f"{lo}–{hi - 1}" for lo, hi in zip(edges, edges[1:])]
    rows = ["| checkpoint | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(heads)]
    for name, (loss, counted) in zip(names, sums):
        cells = []
        for lo, hi in zip(edges, edges[1:]):
            n = counted[lo:hi].sum().item()
            cells.append(f"{loss[lo:hi].sum().item() / n:.2f}" if n else "–")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="+", help="factlab checkpoints (.params) of the same vocabulary")
    parser.add_argument("--corpus", required=True, help="the pretraining corpus, wiki.txt")
    parser.add_argument("--draws", type=int, default=512, help="span-corruption draws to score (default 512)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        headers = [read_config(p) for p in args.params]  # None for a course .params file: refused below
        block = max(h[0].block_size for h in headers if h is not None)
        dataset = CharCorruptionDataset(read_text(args.corpus), block, seed=args.seed, source=args.corpus)
        draws = [dataset[i % len(dataset)] for i in range(args.draws)]
        x, y = torch.stack([d[0] for d in draws]), torch.stack([d[1] for d in draws])
        sums = [position_losses(p, dataset.vocab, x, y) for p in args.params]
    except (FactlabError, ValueError) as e:  # ValueError: max() of no factlab checkpoint
        raise SystemExit(f"position_loss: {e}") from None
    print("\n".join(table(args.params, sums)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
