"""One trainer for pretraining and finetuning: they differ only in dataset and hyperparameters.

As in the course: AdamW (betas 0.9/0.95, weight decay on matmul weights only), gradient clipping at 1.0, and a
learning rate that warms up linearly over `warmup_tokens` and then decays along a cosine to 10% at `final_tokens`
(it stays at 10% afterwards; the course's formula would rise again). The schedule's clock counts every example as
block_size - 1 positions, exactly as the course's padded batches did, so the course's warmup and final token
budgets keep their meaning even though factlab never computes on padding. Under `max_minutes` the cosine runs on
whichever clock is further along, tokens or wall-clock time, so a run that the time limit ends still ends on the
decayed rate however fast the machine is.

On a GPU it trains in bf16 autocast with TF32 matmuls, fused AdamW and pinned-memory batches (`compile=True` adds
torch.compile). On a CPU it trains in fp32 unless `precision="bf16"`: CPUs with native bf16 instructions
(avx512_bf16, AMX) run it much faster, others far slower, and it changes the numerics, so it is the user's choice. Under `torchrun` it is DistributedDataParallel: every rank draws the same global batch and trains
on its share of the rows, so a run on N processes takes the same steps as one process with the same global batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import FactlabError
from .data import length_grouped_batches
from .model import GPT
from .vocab import PAD_ID


@dataclass
class TrainConfig:
    max_epochs: int
    batch_size: int
    learning_rate: float
    final_tokens: int
    warmup_tokens: int = 512 * 20
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    grad_norm_clip: float = 1.0
    seed: int = 0
    max_minutes: float | None = None
    device: str = "cpu"
    compile: bool = False  # torch.compile the model (opt-in: compiling costs tens of seconds up front)
    precision: str = "auto"  # "bf16" autocast of the forward pass, "fp32", or "auto": bf16 on a GPU, fp32 on a CPU

    @classmethod
    def course_pretrain(cls, n_documents: int, block_size: int, decay_epochs: int = 200,
                        **overrides) -> TrainConfig:
        # The course's cosine ends after 200 epochs' worth of tokens (of its 650); a shorter run sets its own span.
        return cls(**{"max_epochs": 650, "batch_size": 128, "learning_rate": 6e-3,
                      "final_tokens": decay_epochs * n_documents * block_size, **overrides})

    @classmethod
    def course_finetune(cls, n_documents: int, block_size: int, pretrained: bool, **overrides) -> TrainConfig:
        # The course's finetuning reuses the pretraining corpus's final_tokens, so its rate barely decays.
        return cls(**{"max_epochs": 10 if pretrained else 75, "batch_size": 256, "learning_rate": 6e-4,
                      "final_tokens": 200 * n_documents * block_size, **overrides})


def learning_rate(config: TrainConfig, tokens: int, time_used: float = 0.0) -> float:
    """The rate after `tokens` schedule tokens, with `time_used` the fraction of max_minutes gone (0 without it)."""
    if tokens < config.warmup_tokens:
        return config.learning_rate * tokens / max(1, config.warmup_tokens)
    progress = (tokens - config.warmup_tokens) / max(1, config.final_tokens - config.warmup_tokens)
    progress = min(1.0, max(progress, time_used))
    return config.learning_rate * max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))


@dataclass
class TrainResult:
    steps: int
    epochs_done: float
    tokens: int  # non-PAD input tokens processed
    seconds: float
    final_loss: float
    stopped_early: bool

    def to_dict(self) -> dict:
        return asdict(self)


PRECISIONS = ("auto", "fp32", "bf16")


def uses_bf16(precision: str, device: torch.device) -> bool:
    if precision not in PRECISIONS:
        raise FactlabError(f"precision {precision!r}: unknown (known: {', '.join(PRECISIONS)})")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise FactlabError("--device cuda: no CUDA GPU is available to torch here (use --device cpu or auto)")
    if name == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per process
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a torchrun job (rank 0 of 1 outside one)."""
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks(device: torch.device | None = None) -> Ranks:
    """This process's rank, joining torchrun's process group on first use: NCCL on GPUs, gloo on CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Ranks()
    if not dist.is_initialized():
        cuda = device is not None and device.type == "cuda"
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size())


def shard(x: torch.Tensor, y: torch.Tensor, where: Ranks) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of a global batch (rows rank, rank + N, ...), trimmed to their longest example.

    This is what a DistributedSampler does to a list of examples, applied per batch: factlab forms its batches by
    length every epoch, and a sampler would pad uneven shards with repeated examples. A rank left without rows
    gets one all-PAD row, which adds nothing to the loss but keeps it in step with the gradient all-reduce.
    """
    if where.world_size == 1:
        return x, y
    x, y = x[where.rank :: where.world_size], y[where.rank :: where.world_size]
    if len(x) == 0:
        return torch.zeros((1, 1), dtype=torch.long), torch.zeros((1, 1), dtype=torch.long)
    length = max(1, int((x != PAD_ID).sum(1).max()))
    return x[:, :length], y[:, :length]


def epochs_of_batches(dataset, config: TrainConfig, rng: random.Random):
    """(epoch, x, y) for every batch of every epoch; each epoch draws fresh corruptions and a fresh order."""
    for epoch in range(1, config.max_epochs + 1):
        for x, y in length_grouped_batches(dataset, config.batch_size, rng):
            yield epoch, x, y


def train(model: GPT, dataset, config: TrainConfig, metrics_path: str | Path | None = None,
          progress: bool | None = None) -> TrainResult:
    """Train `model` in place on `dataset` (anything with __len__ and example(i, rng) -> unpadded (x, y)).

    Per-step metrics stream to `metrics_path` (JSONL, flushed each step so `tail -f` follows a run). `max_minutes`
    stops after the step that crosses it; the caller saves the model either way. The progress bar shows itself on
    a terminal only unless `progress` says otherwise. Under torchrun only rank 0 logs.
    """
    device = resolve_device(config.device)
    where = ranks(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model.to(device).train()
    decay, no_decay = model.decay_parameters()
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate, betas=config.betas, fused=cuda,
    )
    network = DistributedDataParallel(model) if where.world_size > 1 else model
    if config.compile:
        network = torch.compile(network, dynamic=True)  # batch lengths vary: one graph for all of them
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if uses_bf16(config.precision, device) \
        else contextlib.nullcontext()
    rng = random.Random(config.seed)  # corruption draws and batch order, the same on every rank
    positions_per_example = model.config.block_size - 1
    schedule_tokens = tokens = steps = 0
    loss_value = float("nan")
    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    start = time.perf_counter()
    time_limit = 60 * config.max_minutes if config.max_minutes is not None else math.inf
    elapsed = 0.0  # seconds, the same on every rank (their mean), so all ranks use one rate and stop together
    stopped_early = False
    log = where.is_main
    with (open(metrics_path, "w", encoding="utf-8") if metrics_path and log else contextlib.nullcontext()) as metrics, \
            tqdm(total=config.max_epochs * steps_per_epoch, disable=(None if progress is None else not progress)
                 if log else True, unit="step", dynamic_ncols=True) as bar:
        for epoch, x, y in epochs_of_batches(dataset, config, rng):
            schedule_tokens += len(x) * positions_per_example
            lr = learning_rate(config, schedule_tokens, elapsed / time_limit if time_limit > 0 else 1.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch_targets = int((y != PAD_ID).sum())  # of the global batch: the loss is its mean over them
            tokens += int((x != PAD_ID).sum())
            x, y = shard(x, y, where)
            if cuda:
                x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
            with autocast:
                logits, _ = network(x)
            loss_sum = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=PAD_ID,
                                       reduction="sum")
            # DDP averages gradients over ranks; scaling by world_size makes them those of the global mean.
            optimizer.zero_grad(set_to_none=True)
            (loss_sum * (where.world_size / batch_targets)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_norm_clip)
            optimizer.step()

            steps += 1
            loss_value, elapsed = global_loss_and_time(loss_sum.detach(), time.perf_counter() - start, where, device)
            loss_value /= batch_targets
            stop = elapsed > time_limit
            if metrics is not None:
                metrics.write(json.dumps({"step": steps, "epoch": epoch, "loss": round(loss_value, 5), "lr": lr,
                                          "tokens": tokens, "elapsed_s": round(elapsed, 3)}) + "\n")
                metrics.flush()
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens / elapsed:,.0f}")
            bar.update()
            if stop:
                stopped_early = True
                break
    model.eval()
    return TrainResult(steps=steps, epochs_done=round(steps / steps_per_epoch, 3), tokens=tokens,
                       seconds=round(time.perf_counter() - start, 2), final_loss=loss_value,
                       stopped_early=stopped_early)


def global_loss_and_time(loss_sum: torch.Tensor, elapsed: float, where: Ranks, device) -> tuple[float, float]:
    """The batch's summed loss over all ranks, and the ranks' mean elapsed seconds (one clock for all of them)."""
    if where.world_size == 1:
        return loss_sum.item(), elapsed
    both = torch.stack([loss_sum.float(), torch.tensor(elapsed, dtype=torch.float32, device=device)])
    dist.all_reduce(both)
    return both[0].item(), both[1].item() / where.world_size
