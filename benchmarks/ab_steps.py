"""Is a change to the model worth it? Two copies of the course model, A (as factlab has it) and B (with the
change), trained step by step on the same pretraining batches, interleaved, in one process.

    python benchmarks/ab_steps.py --data ../shared/data/birthplaces --change fused-qkv [--precision fp32|bf16]
                                  [--steps 14] [--skip-steps 2] [--quick]

Each step is timed from the forward pass to the optimizer step (forward, loss, backward, clipping, AdamW); the
order of A and B alternates from step to step, so drifts of the machine's speed hit both alike. It prints the
median microseconds per non-PAD target of each and B's speed-up over A, and the losses of the first steps (equal
when the change keeps the numerics, as fused-qkv does to rounding). Both train with AdamW at the course's
pretraining rate, 6e-3, without warm-up: a harness for timing, not a training run (a compiled model draws other
dropout masks, and its losses part from A's after the first step). The changes:

- fused-qkv: one 256 x 768 matmul for the query, key and value projections instead of three;
- no-dropout / no-attn-dropout / attn-dropout-only: what the course's dropout 0.1 costs, all of it, the
  attention weights' part (SDPA falls back to its unfused path with dropout), or everything but that part.
  These change the model (the course trains with dropout 0.1): they measure a cost, they are not speed-ups.
- compile-static: B is `torch.compile(model, dynamic=False)` fed batches padded to a multiple of 32 positions
  (at most 4 shapes, each compiled before the timing starts), against the trainer's `dynamic=True` graphs,
  which `--compile` uses because batch lengths vary. B's time is still divided by the same non-PAD targets.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from factlab.data import length_grouped_batches
from factlab.experiment import pretraining_dataset
from factlab.model import GPT, CausalAttention, GPTConfig, split_heads
from factlab.recipes import Training, train_config
from factlab.vocab import PAD_ID
from run import COURSE_SIZE, DATA_FILES, DROPOUT, QUICK_SIZE  # benchmarks/run.py, next to this script

CHANGES = ("fused-qkv", "no-dropout", "no-attn-dropout", "attn-dropout-only", "compile-static")
STATIC_MULTIPLE = 32  # compile-static: batches padded to a multiple of this length, so a few graphs serve all


class FusedQKV(CausalAttention):
    """Self-attention whose three projections run as one matmul of the concatenated weights."""

    def _qkv(self, x, context=None, rotary=None):
        if context is not None or rotary is not None:  # timed on vanilla self-attention only
            return super()._qkv(x, context, rotary)
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        q, k, v = F.linear(x, weight, bias).split(x.size(-1), dim=-1)
        return tuple(split_heads(t, self.n_head) for t in (q, k, v))


def changed(model: GPT, change: str) -> GPT:
    """A copy of `model` with the change (compile-static changes how it is called, not the copy)."""
    copied = copy.deepcopy(model)
    for m in copied.modules():
        if change == "fused-qkv" and type(m) is CausalAttention:
            m.__class__ = FusedQKV
        if change in ("no-dropout", "no-attn-dropout") and isinstance(m, CausalAttention):
            m.dropout = 0.0
        if change in ("no-dropout", "attn-dropout-only") and isinstance(m, nn.Dropout):
            m.p = 0.0
    return copied


def compiled_static(model: GPT, batches, autocast):
    """`model` compiled with static shapes, as a function of (x, y) that pads both to a multiple of
    STATIC_MULTIPLE positions (PAD inputs at the end change nothing before them, PAD targets carry no loss);
    every padded shape of `batches` is compiled here, so that the timed steps run compiled graphs only."""
    compiled = torch.compile(model, dynamic=False)

    def padded(x, y):
        length = min(model.config.block_size - 1, -(-x.size(1) // STATIC_MULTIPLE) * STATIC_MULTIPLE)
        return F.pad(x, (0, length - x.size(1)), value=PAD_ID), F.pad(y, (0, length - y.size(1)), value=PAD_ID)

    for x, y in {padded(x, y)[0].shape: padded(x, y) for x, y in batches}.values():
        with autocast:
            _, loss = compiled(x, y)
        loss.backward()
    model.zero_grad(set_to_none=True)  # the weights are untouched: no optimizer step
    return lambda x, y: compiled(*padded(x, y))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder with wiki.txt")
    ap.add_argument("--change", choices=CHANGES, required=True)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--skip-steps", type=int, default=2, help="uncounted steps at the start (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="a tiny model: checks the command works")
    args = ap.parse_args(argv)
    if args.steps <= args.skip_steps:
        ap.error("--steps must exceed --skip-steps")
    wiki = Path(args.data) / DATA_FILES["wiki"]
    if not wiki.is_file():
        ap.error(f"{wiki}: not found")

    dataset = pretraining_dataset(wiki, 128)
    batches = length_grouped_batches(dataset, 128, random.Random(0))
    batches = (batches * -(-args.steps // len(batches)))[: args.steps]
    torch.manual_seed(0)
    size = QUICK_SIZE if args.quick else COURSE_SIZE
    models = {"A": GPT(GPTConfig(vocab_size=dataset.vocab_size, dropout=DROPOUT, **size))}
    models["B"] = changed(models["A"], args.change)
    course = train_config("pretrain", Training(), len(dataset), 128)  # its rate and clipping, not its schedule
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=course.learning_rate) for k, m in models.items()}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")
    forward = dict(models)  # what each step calls with (x, y)
    if args.change == "compile-static":
        forward["B"] = compiled_static(models["B"], batches, autocast)
    per_token = {"A": [], "B": []}
    losses = {"A": [], "B": []}
    for i, (x, y) in enumerate(batches):
        for name in ("A", "B") if i % 2 else ("B", "A"):
            model, optimizer = models[name].train(), optimizers[name]
            torch.manual_seed(i)  # the same dropout draws for both when their dropout is the same
            start = time.perf_counter()
            with autocast:
                _, loss = forward[name](x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), course.grad_norm_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - start
            losses[name].append(loss.item())
            if i >= args.skip_steps:
                per_token[name].append(seconds / int((y != PAD_ID).sum()))
    result = {"change": args.change, "precision": args.precision, "threads": torch.get_num_threads(),
              "steps": len(per_token["A"]), "first_losses": {k: [round(v, 5) for v in losses[k][:3]] for k in losses},
              **{f"{k}_us_per_token": round(statistics.median(v) * 1e6, 1) for k, v in per_token.items()}}
    result["speedup"] = round(result["A_us_per_token"] / result["B_us_per_token"], 3)
    print(f"{args.change}, {args.precision}, {result['threads']} threads, {result['steps']} counted steps: "
          f"A {result['A_us_per_token']} us per non-PAD token, B {result['B_us_per_token']}: "
          f"B is {result['speedup']:.2f}x A" + ("   [--quick: numbers mean nothing]" if args.quick else ""))
    print(f"first losses: A {result['first_losses']['A']}, B {result['first_losses']['B']}")
    return result


if __name__ == "__main__":
    main()
