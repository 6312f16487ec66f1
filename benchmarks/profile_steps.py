"""Where a training step's time goes: torch.profiler over a few steps of factlab's trainer or of the course's
loop, with the same setup as benchmarks/run.py (course model and settings, dropout 0.1, warm-up steps first).

    python benchmarks/profile_steps.py --data ../shared/data/birthplaces --loop factlab|course --phase pretrain|finetune
                                       [--steps 3] [--warmup-steps 2] [--device auto|cpu|cuda] [--precision fp32|bf16]
                                       [--compile] [--trace trace.json]

It prints the profiled steps' wall-clock time split into categories of operators (self time: linear-layer
matmuls, attention, dropout's random numbers, copies, other element-wise work, the optimizer; "outside
operators" is Python, data preparation and the profiler's own overhead), then the 20 costliest operators. On a
GPU the categories count the operators' CPU-side time only; read the kernels' times in the table or the trace.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from run import (COURSE_SIZE, DATA_FILES, DROPOUT, QUICK_SIZE, BudgetSpent,  # benchmarks/run.py, next to this script
                 require_data_files, training_setup)

# operator name -> category; the first matching rule wins (names are matched by prefix after "aten::")
OPTIMIZER = "optimizer step and gradient clipping"
CATEGORIES = [
    (OPTIMIZER, ("_foreach", "_fused_adamw", "linalg_vector_norm", "clamp")),
    ("linear layers: matmul (mm, addmm)", ("mm", "addmm", "linear", "matmul")),
    ("attention: batched matmul, softmax, masking", ("bmm", "baddbmm", "_softmax", "softmax", "_softmax_backward",
                                                     "masked_fill", "_scaled_dot_product", "_flash_attention",
                                                     "isneginf", "all", "where", "logical_not", "tril")),
    ("dropout: random masks (bernoulli_)", ("bernoulli", "native_dropout")),
    ("copies (copy_, contiguous, clone, cat)", ("copy_", "clone", "contiguous", "cat", "_to_copy", "index")),
    ("element-wise: GELU, LayerNorm, add, mul, loss", ("gelu", "native_layer_norm", "layer_norm", "add", "mul",
                                                       "div", "sum", "_log_softmax", "nll_loss", "embedding",
                                                       "sub", "fill_", "zero_", "ne", "eq", "ge", "sqrt")),
]


def category(event) -> str | None:
    """The category of an operator's self time; None for ranges that are not operators."""
    name = event.name
    if not name.startswith("aten::"):
        return None  # autograd's and the optimizer's ranges: their operators are counted one by one
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("Optimizer."):
            return OPTIMIZER
        parent = parent.cpu_parent
    op = name.split("::", 1)[-1]
    for label, prefixes in CATEGORIES:
        if any(op == p or op.startswith(p + "_") or op.startswith(p) and p.startswith("_") for p in prefixes):
            return label
    return "other operators"


def main(argv=None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--loop", choices=("factlab", "course"), required=True)
    ap.add_argument("--phase", choices=("pretrain", "finetune"), required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup-steps", type=int, default=2)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--threads", type=int)
    ap.add_argument("--dropout", type=float, default=DROPOUT)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="factlab's trainer only")
    ap.add_argument("--compile", action="store_true", help="factlab's trainer only: torch.compile the model")
    ap.add_argument("--trace", help="also write a Chrome trace (chrome://tracing, ui.perfetto.dev)")
    ap.add_argument("--quick", action="store_true", help="a tiny model: checks the command works (shares mean nothing)")
    args = ap.parse_args(argv)
    needed = [DATA_FILES["wiki"]] + ([DATA_FILES["train"]] if args.phase == "finetune" else [])
    require_data_files(ap, args.data, needed)

    import torch
    from torch.profiler import ProfilerActivity, profile

    spec = {"data": str(Path(args.data).resolve()), "device": args.device, "threads": args.threads, "seed": 0,
            "model": QUICK_SIZE if args.quick else COURSE_SIZE, "dropout": args.dropout, "phase": args.phase,
            "loop": args.loop, "course_workers": 0, "precision": args.precision, "compile": args.compile}
    device, dataset, model, batch_size, run = training_setup(spec)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    prof = profile(activities=activities)
    state = {"calls": 0, "start": None, "shapes": []}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def hook(module, hook_args, kwargs):
        if state["calls"] == args.warmup_steps:
            sync()
            state["start"] = time.perf_counter()
            prof.start()
        elif state["calls"] == args.warmup_steps + args.steps:
            sync()
            prof.stop()
            state["seconds"] = time.perf_counter() - state["start"]
            raise BudgetSpent
        if state["calls"] >= args.warmup_steps:
            state["shapes"].append(tuple(hook_args[0].shape))
        state["calls"] += 1

    model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
        raise SystemExit("training ended before the profiled steps did")
    except BudgetSpent:
        pass

    wall_us = state["seconds"] * 1e6
    totals: dict[str, float] = {}
    for evt in prof.events():
        label = category(evt)
        if label is not None:
            totals[label] = totals.get(label, 0.0) + evt.self_cpu_time_total
    totals["outside operators (Python, data, profiler)"] = max(0.0, wall_us - sum(totals.values()))
    print(f"{args.loop} loop, {args.phase}: {args.steps} steps of batch {batch_size}, shapes {state['shapes']}, "
          f"{state['seconds']:.2f} s ({state['seconds'] / args.steps:.2f} s/step), {torch.get_num_threads()} threads, "
          f"device {device.type}")
    for label, us in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {us / wall_us:6.1%}  {us / 1e6:8.2f} s  {label}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    if args.trace:
        prof.export_chrome_trace(args.trace)
    return {label: us / wall_us for label, us in totals.items()}


if __name__ == "__main__":
    main()
