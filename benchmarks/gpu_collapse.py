"""Which of the GPU's own differences makes the course's pretraining collapse: one short pretraining per setting,
side by side on one GPU, and a table of their epoch means.

The one 650-epoch GPU run in bf16 (results/course-h200-attempt1) saw vanilla's loss rise after epoch 16 and rope's
after epoch 30, where factlab's trainer in fp32 or bf16 on a CPU, and the course's own loop, kept falling
(docs/course-runs.md). On a GPU, factlab's trainer differs from the CPU's in four ways: CUDA's autocast, TF32
matmuls, fused AdamW and the fused attention kernels. Each setting below is the course recipe's `factlab pretrain`
(seed 0, the course's learning-rate clock) with some of them switched:

    fp32            the course recipe on a GPU: fp32, no TF32, fused AdamW, PyTorch's choice of attention kernel
    fp32-tf32       + TF32 matmuls
    bf16            bf16 autocast with TF32 (the collapsed run's setting)
    bf16-noflash    bf16, no flash attention kernel (the memory-efficient one instead, as for an explicit mask)
    bf16-math       bf16, attention by the math kernel (no flash or memory-efficient kernel)
    bf16-unfused    bf16, AdamW's for-each implementation instead of the fused one

    python benchmarks/gpu_collapse.py --data DATA_DIR --out runs/gpu-collapse --epochs 60          # on a GPU
    python benchmarks/gpu_collapse.py --data DATA_DIR --out runs/gpu-collapse --settings fp32,bf16 --variant rope

It writes OUT/SETTING.params.metrics.jsonl (the trainer's losses), OUT/SETTING.log, and OUT/gpu_collapse.json:
the machine, each setting's exit code, seconds and epoch means, and whether its loss rose by more than --rise
above its lowest epoch mean after that epoch (what the collapsed run did). Checkpoints stay in OUT.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # epoch_losses, beside this file

from factlab.io import write_text_atomic  # noqa: E402
from factlab.model import VARIANTS  # noqa: E402
from factlab.reproduce import hardware  # noqa: E402

SETTINGS = {  # precision, TF32, attention kernels, fused AdamW
    "fp32": {"precision": "fp32"},
    "fp32-tf32": {"precision": "fp32", "tf32": True},
    "bf16": {"precision": "bf16"},
    "bf16-noflash": {"precision": "bf16", "kernels_off": ["flash", "cudnn"]},
    "bf16-math": {"precision": "bf16", "kernels_off": ["flash", "cudnn", "mem_efficient"]},
    "bf16-unfused": {"precision": "bf16", "unfused_adamw": True},
}


def switch(setting: dict) -> None:
    """Apply a setting's switches in this process, before training: they patch the trainer's choices."""
    import torch

    from factlab import train

    if setting.get("tf32"):
        train.uses_tf32 = lambda precision, device: device.type == "cuda"
    for kernel in setting.get("kernels_off", ()):  # torch.backends.cuda.enable_flash_sdp(False) and the like
        enable = getattr(torch.backends.cuda, f"enable_{kernel}_sdp", None)
        if enable is not None:
            enable(False)
    if setting.get("unfused_adamw"):
        fused_adamw = train.adamw
        train.adamw = lambda model, config, fused: fused_adamw(model, config, fused=False)


def worker(args) -> int:
    """One setting's pretraining, in this process."""
    from factlab import cli

    setting = SETTINGS[args.worker]
    switch(setting)
    return cli.main(["pretrain", args.variant, str(args.data / "wiki.txt"), "--writing_params_path",
                     str(args.out / f"{args.worker}.params"), "--max_epochs", str(args.epochs), "--seed", str(args.seed),
                     "--device", args.device, "--precision", setting["precision"], *args.extra])


def rose(means: dict[int, tuple[float, float | None]], by: float) -> dict:
    """The lowest epoch mean, and whether a later epoch's mean is more than `by` above it."""
    if not means:
        return {"lowest": None, "at_epoch": None, "highest_after": None, "rose": None}
    low_epoch = min(means, key=lambda e: means[e][0])
    after = [means[e][0] for e in means if e > low_epoch]
    highest = max(after) if after else None
    return {"lowest": round(means[low_epoch][0], 4), "at_epoch": low_epoch,
            "highest_after": None if highest is None else round(highest, 4),
            "rose": highest is not None and highest > means[low_epoch][0] + by}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the folder holding wiki.txt")
    parser.add_argument("--out", type=Path, required=True, help="metrics, logs, checkpoints and gpu_collapse.json")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated, of {', '.join(SETTINGS)} (default: all, side by side)")
    parser.add_argument("--variant", default="vanilla", choices=VARIANTS)
    parser.add_argument("--epochs", type=int, default=60, help="pretraining epochs (the course's clock; default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--rise", type=float, default=0.2, help="a rise above the lowest epoch mean that counts")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="more `factlab pretrain` options, last (e.g. --n_embd 16 for a rehearsal on a CPU)")
    parser.add_argument("--worker", choices=tuple(SETTINGS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown or not settings:
        parser.error(f"--settings: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SETTINGS)}")
    if not (args.data / "wiki.txt").is_file():
        parser.error(f"{args.data / 'wiki.txt'}: no such file")
    args.out.mkdir(parents=True, exist_ok=True)

    import epoch_losses

    started = time.monotonic()
    processes = {}
    for name in settings:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--data", str(args.data),
                   "--out", str(args.out), "--variant", args.variant, "--epochs", str(args.epochs),
                   "--seed", str(args.seed), "--device", args.device, "--extra", *args.extra]
        log = open(args.out / f"{name}.log", "w", encoding="utf-8")
        processes[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log, time.monotonic())
    report = {"machine": hardware(), "variant": args.variant, "epochs": args.epochs, "seed": args.seed,
              "rise": args.rise, "settings": {}}
    ended = {}  # each setting's seconds, taken when it ends (they run side by side)
    while len(ended) < len(processes):
        for name, (process, log, began) in processes.items():
            if name not in ended and process.poll() is not None:
                ended[name] = round(time.monotonic() - began, 1)
                log.close()
        time.sleep(0.5)
    means = {}
    for name, (process, _, _) in processes.items():
        metrics = args.out / f"{name}.params.metrics.jsonl"
        means[name] = epoch_losses.epoch_means(metrics, min_steps=1) if metrics.is_file() else {}
        report["settings"][name] = {"switches": SETTINGS[name], "exit": process.returncode, "seconds": ended[name],
                                    **rose(means[name], args.rise),
                                    "epoch_means": {e: round(m, 4) for e, (m, _) in means[name].items()}}
    report["seconds"] = round(time.monotonic() - started, 1)
    write_text_atomic(args.out / "gpu_collapse.json", json.dumps(report, indent=1) + "\n")
    print(epoch_losses.table(settings, [means[s] for s in settings], every=10))
    for name in settings:
        r = report["settings"][name]
        print(f"{name}: exit {r['exit']}, {r['seconds']} s, lowest {r['lowest']} at epoch {r['at_epoch']}, "
              f"{'ROSE' if r['rose'] else 'did not rise'} (highest after: {r['highest_after']})")
    return 0 if all(r["exit"] == 0 for r in report["settings"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
