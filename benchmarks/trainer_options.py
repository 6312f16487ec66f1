"""factlab's pretraining throughput under different trainer options, in one run on one machine.

    python benchmarks/trainer_options.py --data ../shared/data/birthplaces [--n_embd 256 --n_head 8]
                                         [--options fp32,bf16,bf16+compile] [--seconds 45] [--dropout 0]
                                         [--batch_size 128]
    python benchmarks/trainer_options.py --data ../shared/data/birthplaces --dropout 0.1 --options bf16,bf16+micro16,bf16+length

An option set is a precision (fp32 or bf16) with modifiers: +compile (torch.compile), +microN (`--micro_batch N`:
each batch in passes of N rows sorted by length) and +length (`--batching length`: length-grouped batches in
place of the course's batches in file order).

Each option set trains the same model from the same weights on the same batches (pretraining with the course's
learning rate) for `--seconds` (a minute more with +compile, for compiling), and reports the steady-state non-PAD
tokens per second after the first `--skip-steps` steps, and the ratio to the first option set. It answers "is bf16
(or torch.compile, or micro-batches) worth it on this machine for this model size?", which depends on the CPU and
on the width:
benchmarks/README.md has what it measured. The options run one after the other in this process, so run it on a
quiet machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from factlab.experiment import pretraining_dataset
from factlab.model import GPT, GPTConfig
from factlab.recipes import Training, train_config
from factlab.train import train


def steady_tokens_per_s(metrics_path: Path, skip_steps: int) -> tuple[float, int, float]:
    """(tokens/s after the first `skip_steps` steps, steps counted, seconds of the first step) from a run's
    metrics: every row carries the cumulative tokens and the elapsed time at the end of its step."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    if len(rows) <= skip_steps + 1:
        raise SystemExit(f"only {len(rows)} steps in the budget: raise --seconds or lower --skip-steps")
    first, last = rows[skip_steps], rows[-1]
    rate = (last["tokens"] - first["tokens"]) / (last["elapsed_s"] - first["elapsed_s"])
    return rate, len(rows) - skip_steps - 1, rows[0]["elapsed_s"]


def training(option: str, batch_size: int, seconds: float) -> Training:
    """The option set's pretraining settings: the course's 650-epoch schedule, stopped by the clock; compiling
    (tens of seconds) gets its own minute. ValueError for an option set that is not one."""
    precision, *modifiers = option.split("+")
    if precision not in ("fp32", "bf16") or len(set(modifiers)) < len(modifiers):
        raise ValueError(option)
    settings = {"precision": precision, "batch_size": batch_size}
    for modifier in modifiers:
        if modifier == "compile":
            settings["compile"] = True
        elif modifier == "length":
            settings["batching"] = "length"
        elif modifier.startswith("micro") and modifier[5:].isdigit() and int(modifier[5:]) > 0:
            settings["micro_batch"] = int(modifier[5:])
        else:
            raise ValueError(option)
    return Training(max_minutes=(seconds + (60 if settings.get("compile") else 0)) / 60, **settings)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with wiki.txt")
    ap.add_argument("--options", default="fp32,bf16,bf16+compile",
                    help="comma-separated option sets: fp32 or bf16, with any of +compile, +microN, +length "
                    "(default %(default)s)")
    ap.add_argument("--n_layer", type=int, default=4)
    ap.add_argument("--n_head", type=int, default=8)
    ap.add_argument("--n_embd", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--batch_size", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=45.0, help="measured time per option set after the skipped steps")
    ap.add_argument("--skip-steps", type=int, default=5, help="uncounted steps at the start (default %(default)s)")
    args = ap.parse_args(argv)
    wiki = Path(args.data) / "wiki.txt"
    if not wiki.is_file():
        ap.error(f"{wiki}: not found")
    option_sets = [o.strip() for o in args.options.split(",") if o.strip()]
    for o in option_sets:
        try:
            training(o, args.batch_size, args.seconds)
        except ValueError:
            ap.error(f"--options: {o!r} is not fp32 or bf16 with any of +compile, +microN, +length")

    # One dataset for all option sets: the trainer draws corruptions and order from its own seeded generator,
    # so every option set sees the same batches.
    dataset = pretraining_dataset(wiki, 128)
    results = []
    for option in option_sets:
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=dataset.vocab_size, n_layer=args.n_layer, n_head=args.n_head,
                              n_embd=args.n_embd, block_size=128, dropout=args.dropout))
        config = train_config("pretrain", training(option, args.batch_size, args.seconds), len(dataset), 128)
        with tempfile.TemporaryDirectory() as tmp:
            metrics = Path(tmp) / "metrics.jsonl"
            train(model, dataset, config, metrics_path=metrics, progress=False)
            tokens_per_s, steps, first_step_s = steady_tokens_per_s(metrics, args.skip_steps)
        results.append({"options": option, "tokens_per_s": round(tokens_per_s, 1), "steps": steps,
                        "first_step_s": first_step_s})
        print(f"{option:>14}: {tokens_per_s:8,.0f} non-PAD tokens/s over {steps} steps", file=sys.stderr, flush=True)
    base = results[0]["tokens_per_s"]
    print(f"model: {args.n_layer} layers, {args.n_head} heads, {args.n_embd} dims, dropout {args.dropout}, "
          f"batch {args.batch_size}; "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for r in results:
        print(f"{r['options']:>14}: {r['tokens_per_s']:8,.0f} tokens/s  {r['tokens_per_s'] / base:5.2f}x  "
              f"(first step {r['first_step_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
