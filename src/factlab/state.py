"""The training state: everything a run needs to continue exactly where it stopped.

`PARAMS.state` sits beside the checkpoint a run writes. It holds the model's and the optimizer's state, the
schedule's clock (steps, tokens, elapsed seconds), the position in the data (the epoch, the batches of it already
taken, and the batch-order generator as it stood when the epoch began, so that the epoch's batches and
corruptions are drawn again identically), torch's generators (dropout), and the run's identity: its options, its
data and the checkpoint it started from. `--resume` refuses a state whose identity differs, in one line naming
what differs. The file is written atomically (io.atomic_path) and read with `weights_only=True`: loading it runs
no pickled code.

The metrics of a run in progress go to `PARAMS.metrics.jsonl.partial`; they become `PARAMS.metrics.jsonl` when
the checkpoint they belong to is written, so a run that fails never leaves beside an older checkpoint a curve
that is not that checkpoint's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from . import FactlabError
from .io import atomic_path, write_text_atomic

VERSION = 1
# Options that say where or how fast a run goes, not what it computes: a resumed run may change them.
NOT_IDENTITY = ("device", "micro_batch")  # micro_batch: in how many passes a step is computed


def state_path(params_path) -> Path:
    return Path(f"{params_path}.state")


def partial_metrics_path(metrics_path) -> Path:
    return Path(f"{metrics_path}.partial")


def fingerprint(path) -> str:
    """sha256 of a file's bytes: which corpus, question file or checkpoint a run read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise FactlabError(f"{path}: cannot read ({err.strerror})") from None
    return digest.hexdigest()


def save(path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"version": VERSION, **payload}, tmp)


def load(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FactlabError(f"{path}: no training state to resume (the run finished, or never saved one); "
                           "start it without --resume")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file: all mean "unreadable"
        raise FactlabError(f"{path}: truncated or corrupt training state ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("version") != VERSION or "identity" not in payload:
        raise FactlabError(f"{path}: not a factlab training state (version {VERSION})")
    return payload


def check_identity(path, saved: dict, now: dict) -> None:
    """One line naming every option, data file or starting checkpoint in which this run differs from the saved one."""
    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            elif k not in NOT_IDENTITY:
                out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, (list, tuple)) else v
        return out

    a, b = flat(saved), flat(now)
    # An option that one side does not know is one a later factlab added, with a default that keeps the old
    # behaviour: a state saved before it still resumes.
    diffs = [f"{k} {a[k]!r} (now {b[k]!r})" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    if diffs:
        diffs = [d if len(d) < 120 else d[:117] + "..." for d in diffs]
        raise FactlabError(f"{path}: this run differs from the saved one in " + "; ".join(diffs)
                           + "; resume with the saved run's options, or start afresh without --resume")


def continue_metrics(metrics_path, steps: int) -> None:
    """Prepare the partial metrics of a resumed run: the records of its first `steps` steps (from the partial
    file, else from the metrics a clean stop published), since the steps after the last saved state are taken
    again."""
    partial = partial_metrics_path(metrics_path)
    source = partial if partial.is_file() else Path(metrics_path)
    kept = []
    if source.is_file():
        for line in source.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                break
            if record.get("step", steps + 1) > steps:
                break
            kept.append(line + "\n")
    write_text_atomic(partial, "".join(kept))


def publish_metrics(metrics_path) -> None:
    """The partial metrics become the checkpoint's, now that the checkpoint is written."""
    partial = partial_metrics_path(metrics_path)
    if partial.is_file():
        os.replace(partial, metrics_path)


def remove(path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
