"""Measurements of the real factlab.model.GPT, to hold the cost model to: FLOPs counted by torch, the bytes
autograd saves for the backward pass, and the time of a forward + backward step.

Timing on a shared machine is noisy, so each (variant, ℓ) is run `repeats` times, the variants in turn (in a
rotating order, so that a slow spell of the machine does not land on one variant), and the median is kept. Both
the process CPU time and the wall-clock time are recorded; CPU time is the steadier of the two when other jobs
take turns on the cores.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ..model import GPT, GPTConfig
from .cost import Sizes


def config(variant: str, s: Sizes) -> GPTConfig:
    return GPTConfig(vocab_size=s.vocab_size, block_size=s.block, n_layer=s.n_layer, n_head=s.n_head,
                     n_embd=s.n_embd, variant=variant, bottleneck_dim=s.bottleneck_dim, dropout=0.0,
                     synthesizer_b=s.synthesizer_b)


def batch_of(s: Sizes, batch: int, device="cpu", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    if device == "meta":
        idx = torch.zeros(batch, s.length, dtype=torch.long, device="meta")
        return idx, idx.clone()
    g = torch.Generator().manual_seed(seed)
    idx, targets = torch.randint(2, s.vocab_size, (2, batch, s.length), generator=g)
    return idx, targets


def counted_flops(variant: str, s: Sizes) -> int:
    """Forward FLOPs of one sequence as torch's FlopCounterMode counts them, on the meta device (no arithmetic
    is done). SDPA's math path is forced because the counter does not see inside the fused CPU kernel."""
    with torch.device("meta"):
        model = GPT(config(variant, s))
    idx, targets = batch_of(s, 1, "meta")
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(idx, targets)
    return counter.get_total_flops()


def saved_bytes(model: GPT, idx: torch.Tensor, targets: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(bytes of the distinct storages autograd saves during the forward pass, parameters excluded; the loss)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(idx, targets)
    return sum(storages.values()), loss


def step_time(model: GPT, idx: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one forward + backward pass."""
    model.zero_grad(set_to_none=True)
    cpu, wall = time.process_time(), time.perf_counter()
    _, loss = model(idx, targets)
    loss.backward()
    return time.process_time() - cpu, time.perf_counter() - wall


def measure(variants: list[str], s: Sizes, batch: int, repeats: int, seed: int = 0) -> dict[str, dict]:
    """Per variant: saved activation bytes, and median CPU and wall seconds of a forward + backward step."""
    models = {}
    for v in variants:
        torch.manual_seed(seed)
        models[v] = GPT(config(v, s))
    idx, targets = batch_of(s, batch, seed=seed)
    out = {}
    for v, model in models.items():  # the warm-up step, which also records the saved tensors
        activation, loss = saved_bytes(model, idx, targets)
        loss.backward()
        out[v] = {"activation_bytes": activation, "cpu_s": [], "wall_s": []}
    for r in range(repeats):
        for v in variants[r % len(variants):] + variants[: r % len(variants)]:
            cpu, wall = step_time(models[v], idx, targets)
            out[v]["cpu_s"].append(cpu)
            out[v]["wall_s"].append(wall)
    for v in variants:
        out[v]["cpu_median_s"] = statistics.median(out[v]["cpu_s"])
        out[v]["wall_median_s"] = statistics.median(out[v]["wall_s"])
    return out
