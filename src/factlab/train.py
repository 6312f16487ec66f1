"""One trainer for pretraining and finetuning: they differ only in dataset and hyperparameters.

By default it is the course's Trainer: AdamW (betas 0.9/0.95) with weight decay on every parameter whose name
contains neither "bias" nor "LayerNorm.weight" (in this model that is every weight: the embeddings, pos_emb and
the LayerNorm weights too), gradient clipping at 1.0, and the Trainer's learning rate: a linear warm-up over
`warmup_tokens`, then lr * max(0.1, 0.5 * (1 + cos(pi * progress))) with progress = (tokens - warmup) /
(final_tokens - warmup) and no clamp, so past final_tokens the rate rises and falls again; the Trainer sets it
after each step from the tokens seen so far, so its first step runs at the full rate. The schedule's clock counts
every example as block_size - 1 positions, exactly as the course's padded batches did, so the course's warmup
and final token budgets keep their meaning even though factlab never computes on padding.

factlab's own choices are named options (the CPU recipes use them): `lr_schedule="floor"` holds the rate at 10%
after final_tokens, sets it before each step from the tokens including it, and under `max_minutes` runs the
cosine on whichever clock is further along, tokens or wall-clock time, so a run that the time limit ends still
ends on the decayed rate; `weight_decay_groups="matmul"` decays matmul weights only (minGPT's later habit);
`batching="length"` batches examples of similar length together in a new order every epoch, where the course's
batches are the documents in file order.

`micro_batch` N computes each batch in passes of N rows sorted by length, each padded to its own longest row,
and sums their gradients: the same gradient up to rounding, with less padding computed (on a CPU, where a padded
position costs as much as a real one, 16 rows train the course's batches 1.9x faster: docs/performance.md).

A run can be stopped and resumed exactly (state.py): with a state path it saves its training state every
`save_every_minutes` and whenever it stops; SIGINT and SIGTERM stop it after the current step.

On a GPU, with `precision="auto"` or "bf16", it trains in bf16 autocast with TF32 matmuls; with "fp32" in fp32
without TF32, as the course's code does in today's PyTorch. Either way it uses fused AdamW and pinned-memory batches
(`compile=True` adds torch.compile). On a CPU it trains in fp32 unless `precision="bf16"`: CPUs with native bf16 instructions
(avx512_bf16, AMX) run it much faster, others far slower, and it changes the numerics, so it is the user's choice. Under `torchrun` it is DistributedDataParallel: every rank draws the same global batch and trains
on its share of the rows, so a run on N processes takes the same steps as one process with the same global batch.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import FactlabError, state
from .data import BATCHINGS, epoch_batches
from .model import GPT, GPTConfig
from .vocab import PAD_ID


LR_SCHEDULES = ("course", "floor")
DECAY_GROUPS = ("course", "matmul")


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
    lr_schedule: str = "course"  # "course": the Trainer's formula, unclamped; "floor": factlab's (module docstring)
    weight_decay_groups: str = "course"  # "course": all but biases (and "LayerNorm.weight"); "matmul": matmul weights
    max_steps: int | None = None  # stop after this many optimizer steps (replays a run by its recorded steps)
    # A metrics file whose per-step rates this run takes instead of the schedule's, for as many steps as it
    # records: it replays a run whose rate followed the clock (--max_minutes under "floor") exactly.
    replay_rates: str | None = None
    batching: str = "course"  # "course": the course's batches, in file order; "length": length-grouped (data.py)
    # Rows per forward/backward pass (None: the whole batch at once). The batch's rows, sorted by length, are
    # computed in passes of this many, each cut to its longest row, and their gradients summed: the same
    # gradient as the whole batch (rows are independent and padding is not trained on), with less padding.
    micro_batch: int | None = None

    def __post_init__(self):
        for name, known in (("lr_schedule", LR_SCHEDULES), ("weight_decay_groups", DECAY_GROUPS),
                            ("batching", BATCHINGS)):
            if getattr(self, name) not in known:
                raise FactlabError(f"{name} {getattr(self, name)!r}: unknown (known: {', '.join(known)})")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise FactlabError(f"micro_batch {self.micro_batch}: must be at least 1")


def learning_rate(config: TrainConfig, tokens: int, time_used: float = 0.0) -> float:
    """The rate after `tokens` schedule tokens, with `time_used` the fraction of max_minutes gone (0 without it;
    only the "floor" schedule follows it)."""
    if tokens < config.warmup_tokens:
        return config.learning_rate * tokens / max(1, config.warmup_tokens)
    progress = (tokens - config.warmup_tokens) / max(1, config.final_tokens - config.warmup_tokens)
    if config.lr_schedule == "floor":
        progress = min(1.0, max(progress, time_used))
    return config.learning_rate * max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))


def step_rate(config: TrainConfig, step: int, tokens_before: int, tokens_after: int, time_used: float) -> float:
    """The rate of optimizer step `step` (1-based), whose batch takes the clock from tokens_before to tokens_after.
    The course's Trainer updates the rate after each step, so a step runs at the rate of the tokens before it,
    and the first at the full rate; the "floor" schedule counts the step's own batch."""
    if config.lr_schedule == "course":
        return config.learning_rate if step == 1 else learning_rate(config, tokens_before)
    return learning_rate(config, tokens_after, time_used)


def decay_groups(model: torch.nn.Module, how: str) -> tuple[list, list]:
    """(parameters with weight decay, parameters without)."""
    if how == "course":  # trainer.py's name filter; the model's LayerNorms are ln1/ln2/ln_f, so it spares biases only
        decayed = [p for n, p in model.named_parameters() if not any(nd in n for nd in ("bias", "LayerNorm.weight"))]
    else:
        decayed = model.decay_parameters()[0]
    chosen = {id(p) for p in decayed}
    return decayed, [p for p in model.parameters() if id(p) not in chosen]


def adamw(model: torch.nn.Module, config: TrainConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW with the config's betas, its weight decay on the decay group and none on the other."""
    decay, no_decay = decay_groups(model, config.weight_decay_groups)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate, betas=config.betas, fused=fused)


@dataclass
class TrainResult:
    steps: int
    epochs_done: float
    tokens: int  # non-PAD input tokens processed
    seconds: float
    final_loss: float
    stopped_early: bool  # by max_minutes or max_steps
    interrupted: str | None = None  # "SIGINT" or "SIGTERM" when a signal stopped the run
    resumed_from_step: int | None = None
    seconds_before: float = 0.0  # of `seconds`, those of earlier sittings (a resumed run)
    # the highest peak memory of the processes that trained it: a resumed run's state carries its earlier sessions'
    memory: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


PRECISIONS = ("auto", "fp32", "bf16")


def uses_bf16(precision: str, device: torch.device) -> bool:
    if precision not in PRECISIONS:
        raise FactlabError(f"precision {precision!r}: unknown (known: {', '.join(PRECISIONS)})")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def uses_tf32(precision: str, device: torch.device) -> bool:
    """TF32 matmuls go with autocast: "fp32" asks for true fp32, which is what the course's code computes."""
    return device.type == "cuda" and precision != "fp32"


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
    return trimmed(x, y)


def trimmed(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows cut to their longest example (padding only ever follows an example)."""
    length = max(1, int((x != PAD_ID).sum(1).max()))
    return x[:, :length], y[:, :length]


def micro_batches(x: torch.Tensor, y: torch.Tensor, rows: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batch in passes of at most `rows` rows, longest first, each cut to its longest row (TrainConfig's
    micro_batch); the whole batch when `rows` is None."""
    if rows is None or rows >= len(x):
        return [(x, y)]
    order = torch.argsort((x != PAD_ID).sum(1), descending=True, stable=True)
    return [trimmed(x[part], y[part]) for part in order.split(rows)]


@dataclass
class Position:
    """Where a run stands in its data: in `epoch`, `batches` of it taken, the generator as the epoch began."""
    epoch: int = 1
    batches: int = 0
    epoch_rng: tuple | None = None


def epochs_of_batches(dataset, config: TrainConfig, rng: random.Random, position: Position):
    """(epoch, x, y) for every batch from `position` on; each epoch draws fresh corruptions and a fresh order.
    `position` follows along, so that a saved state can draw the current epoch again and skip what was taken."""
    first = position.epoch
    for epoch in range(first, config.max_epochs + 1):
        if epoch == first and position.epoch_rng is not None:
            rng.setstate(position.epoch_rng)
        position.epoch, position.epoch_rng = epoch, rng.getstate()
        skip, position.batches = (position.batches if epoch == first else 0), 0
        for b, (x, y) in enumerate(epoch_batches(dataset, config.batch_size, rng, config.batching)):
            position.batches = b + 1  # before the yield: a state saved while this batch trains counts it as taken
            if b >= skip:
                yield epoch, x, y


@dataclass
class Checkpointing:
    """Where and how often a run saves its training state, and whether it starts from one."""
    state_path: str | Path | None = None
    every_minutes: float = 10.0
    resume: bool = False
    identity: dict = field(default_factory=dict)  # options, data and starting checkpoint (state.check_identity)


class StopSignals:
    """SIGINT and SIGTERM set a flag the loop reads after each step (a second one stops at once)."""

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(model: GPT, dataset, config: TrainConfig, metrics_path: str | Path | None = None,
          progress: bool | None = None, checkpointing: Checkpointing | None = None,
          on_step: Callable[[dict], None] | None = None) -> TrainResult:
    """Train `model` in place on `dataset` (anything with __len__ and example(i, rng) -> unpadded (x, y)).

    Per-step metrics stream to `metrics_path` (JSONL, flushed each step so `tail -f` follows a run; with a state
    path they go to METRICS.partial until the caller publishes them with the checkpoint, see state.py) and to
    `on_step`, called at the end of every step with the same record plus "batch": the global batch's non-PAD
    targets and inputs, examples and padded positions (what a step clock counts; an exception it raises ends training). `max_minutes` and `max_steps` stop after the step that reaches them, SIGINT and SIGTERM after the
    current step; the caller saves the model either way. With `checkpointing.state_path` the training state is
    saved every `every_minutes` and when the run stops, and `resume` continues from it. The progress bar shows
    itself on a terminal only unless `progress` says otherwise. Under torchrun only rank 0 logs and saves; every
    rank resumes from the one state.
    """
    checkpointing = checkpointing or Checkpointing()
    device = resolve_device(config.device)
    where = ranks(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = uses_tf32(config.precision, device)
    model.to(device).train()
    optimizer = adamw(model, config, fused=cuda)
    recorded = recorded_rates(config.replay_rates) if config.replay_rates else None
    rng = random.Random(config.seed)  # corruption draws and batch order, the same on every rank
    position = Position()
    schedule_tokens = tokens = steps = 0
    elapsed_before = 0.0  # seconds of the run before this process resumed it
    loss_value = float("nan")
    resumed_from = None
    memory_before = None
    log = where.is_main
    live_metrics = metrics_path
    if checkpointing.state_path is not None and metrics_path is not None:
        live_metrics = state.partial_metrics_path(metrics_path)
    if checkpointing.resume:
        saved = state.load(checkpointing.state_path)
        identity = saved["identity"]
        if "model" in identity:  # as this factlab writes it (a synthesizer of an older one is per-head)
            identity = {**identity, "model": GPTConfig.from_dict(identity["model"]).to_dict()}
        state.check_identity(checkpointing.state_path, identity, checkpointing.identity)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        steps, tokens, schedule_tokens = saved["steps"], saved["tokens"], saved["schedule_tokens"]
        elapsed_before, loss_value, resumed_from = saved["elapsed"], saved["loss"], saved["steps"]
        position = Position(saved["epoch"], saved["batches"], saved["epoch_rng"])
        memory_before = saved.get("memory")  # absent from the states of factlab before it kept them
        restore_generators(saved, where, cuda)
        if log and metrics_path is not None:
            state.continue_metrics(metrics_path, steps)

    def save_state():
        """Called by every rank at the same step: each rank's generators are gathered, rank 0 writes."""
        if checkpointing.state_path is None:
            return
        torch_rng, cuda_rng = generators(where, cuda)
        if not log:
            return
        state.save(checkpointing.state_path, {
            "identity": checkpointing.identity, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "steps": steps, "tokens": tokens, "schedule_tokens": schedule_tokens, "elapsed": elapsed,
            "loss": loss_value, "epoch": position.epoch, "batches": position.batches,
            "epoch_rng": position.epoch_rng, "torch_rng": torch_rng, "cuda_rng": cuda_rng,
            "world_size": where.world_size, "memory": highest_memory(memory_before, peak_memory()),
        })

    ddp = DistributedDataParallel(model) if where.world_size > 1 else None
    network = ddp or model
    if config.compile:
        network = torch.compile(network, dynamic=True)  # batch lengths vary: one graph for all of them
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if uses_bf16(config.precision, device) \
        else contextlib.nullcontext()
    positions_per_example = model.config.block_size - 1
    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    total_steps = min(config.max_epochs * steps_per_epoch,
                      math.inf if config.max_steps is None else config.max_steps,
                      math.inf if recorded is None else len(recorded))
    start = time.perf_counter()
    last_save = elapsed_before  # on the ranks' common clock, so that they all save at the same step
    time_limit = 60 * config.max_minutes if config.max_minutes is not None else math.inf
    elapsed = elapsed_before  # seconds, the same on every rank (their mean), so all ranks use one rate and stop together
    stopped_early, interrupted = False, None
    mode = "a" if checkpointing.resume else "w"
    with (open(live_metrics, mode, encoding="utf-8") if live_metrics and log else contextlib.nullcontext()) \
            as metrics, StopSignals() as signals, \
            tqdm(total=total_steps, initial=steps, disable=(None if progress is None else not progress)
                 if log else True, unit="step", dynamic_ncols=True) as bar:
        for epoch, x, y in (() if steps >= total_steps else epochs_of_batches(dataset, config, rng, position)):
            tokens_before = schedule_tokens
            schedule_tokens += len(x) * positions_per_example
            lr = recorded[steps] if recorded is not None else step_rate(
                config, steps + 1, tokens_before, schedule_tokens, elapsed / time_limit if time_limit > 0 else 1.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch_targets = int((y != PAD_ID).sum())  # of the global batch: the loss is its mean over them
            batch = {"targets": batch_targets, "inputs": int((x != PAD_ID).sum()), "examples": len(x),
                     "positions": x.numel()}  # for on_step
            tokens += batch["inputs"]
            optimizer.zero_grad(set_to_none=True)
            # Cut into passes on the CPU, where the lengths are read without waiting for a GPU.
            loss_sum = accumulate_gradients(network, ddp, micro_batches(*shard(x, y, where), config.micro_batch),
                                            batch_targets, where, device, autocast)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_norm_clip)
            optimizer.step()

            steps += 1
            loss_value, elapsed, signalled = global_loss_and_time(
                loss_sum.detach(), elapsed_before + time.perf_counter() - start, signals.received is not None,
                where, device)
            loss_value /= batch_targets
            record = {"step": steps, "epoch": epoch, "loss": round(loss_value, 5), "lr": lr, "tokens": tokens,
                      "elapsed_s": round(elapsed, 3)}
            if metrics is not None:
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
            if on_step is not None:
                on_step({**record, "batch": batch})
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}",
                            tok_s=f"{tokens / max(elapsed, 1e-9):,.0f}")
            bar.update()
            if signalled:
                interrupted = signals.received or "a signal to another rank"
                break
            if elapsed > time_limit or steps >= total_steps:
                stopped_early = elapsed > time_limit or steps < config.max_epochs * steps_per_epoch
                break
            if elapsed - last_save >= 60 * checkpointing.every_minutes:
                save_state()
                last_save = elapsed
        save_state()
    model.eval()
    return TrainResult(steps=steps, epochs_done=round(steps / steps_per_epoch, 3), tokens=tokens,
                       seconds=round(elapsed, 2), final_loss=loss_value, stopped_early=stopped_early,
                       interrupted=interrupted, resumed_from_step=resumed_from, seconds_before=round(elapsed_before, 2),
                       memory=highest_memory(memory_before, peak_memory()))


def peak_memory() -> dict:
    """This process's peak resident memory (everything: Python, torch, data), and the GPU's peak allocation."""
    import resource

    peak = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # KiB on Linux
    if torch.cuda.is_available():
        peak["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


def highest_memory(*peaks: dict | None) -> dict:
    """The highest of each peak over several processes' peak_memory() (None: not known)."""
    highest: dict = {}
    for peak in filter(None, peaks):
        for key, value in peak.items():
            highest[key] = max(highest.get(key, value), value)
    return highest


def accumulate_gradients(network, ddp: DistributedDataParallel | None, passes: list, batch_targets: int,
                         where: Ranks, device: torch.device, autocast) -> torch.Tensor:
    """Backpropagate one step's passes (this rank's micro-batches of the global batch) into the gradients of
    the mean loss over the global batch's `batch_targets` targets; returns this rank's summed loss."""
    loss_sum = torch.zeros((), device=device)
    for i, (xs, ys) in enumerate(passes):
        if device.type == "cuda":
            xs, ys = (t.pin_memory().to(device, non_blocking=True) for t in (xs, ys))
        # DDP all-reduces the gradients in the last pass only; the earlier ones accumulate locally.
        last = i == len(passes) - 1
        with contextlib.nullcontext() if last or ddp is None else ddp.no_sync():
            with autocast:
                logits, _ = network(xs)
            part = F.cross_entropy(logits.float().flatten(0, 1), ys.flatten(), ignore_index=PAD_ID,
                                   reduction="sum")
            # DDP averages gradients over ranks; scaling by world_size makes them those of the global mean.
            (part * (where.world_size / batch_targets)).backward()
        loss_sum += part.detach()
    return loss_sum


def generators(where: Ranks, cuda: bool) -> tuple:
    """torch's generator states (CPU, and CUDA's on a GPU): dropout's draws. Under DDP, every rank's, gathered in
    rank order (a collective: every rank calls it at the same step)."""
    torch_rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else None
    if where.world_size == 1:
        return torch_rng, cuda_rng
    gathered = [None] * where.world_size
    dist.all_gather_object(gathered, (torch_rng, cuda_rng))
    return [g[0] for g in gathered], [g[1] for g in gathered]


def restore_generators(saved: dict, where: Ranks, cuda: bool) -> None:
    """Set torch's generators as a training state saved them: this rank's entry when the state holds one per
    rank of as many ranks; otherwise the first."""
    torch_rng, cuda_rng = saved["torch_rng"], saved.get("cuda_rng")
    if saved.get("world_size", 1) > 1:
        mine = where.rank if saved["world_size"] == where.world_size else 0
        torch_rng, cuda_rng = torch_rng[mine], cuda_rng[mine] if cuda_rng is not None else None
    torch.set_rng_state(torch_rng)
    if cuda and cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)


def recorded_rates(metrics_path) -> list[float]:
    """The learning rate of every step of a metrics file (JSONL, as train writes it), in step order."""
    from .io import read_text

    rates = []
    for number, line in enumerate(read_text(metrics_path).splitlines(), start=1):
        try:
            record = json.loads(line)
            step, lr = record["step"], float(record["lr"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise FactlabError(f"{metrics_path}:{number}: not a metrics record with a step and an lr") from None
        if step != number:
            raise FactlabError(f"{metrics_path}:{number}: step {step} where step {number} was expected")
        rates.append(lr)
    return rates


def global_loss_and_time(loss_sum: torch.Tensor, elapsed: float, signalled: bool, where: Ranks,
                         device) -> tuple[float, float, bool]:
    """The batch's summed loss over all ranks, the ranks' mean elapsed seconds (one clock for all of them), and
    whether any rank received a stop signal (so that all of them stop after the same step)."""
    if where.world_size == 1:
        return loss_sum.item(), elapsed, signalled
    values = torch.stack([loss_sum.float(), torch.tensor(elapsed, dtype=torch.float32, device=device),
                          torch.tensor(float(signalled), device=device)])
    dist.all_reduce(values)
    return values[0].item(), values[1].item() / where.world_size, values[2].item() > 0
