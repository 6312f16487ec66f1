"""factlab against the course's code, measured in one run on one machine: training throughput (pretraining and
finetuning), time to answer the dev questions, and peak memory of each.

    python benchmarks/run.py --data ../shared/data/birthplaces [--seconds 60] [--device auto|cpu|cuda]
                             [--json runs/benchmark.json] [--params CHECKPOINT] [--course-questions 100] [--quick]

- Training: factlab's trainer (`factlab.train.train`) against the course's Trainer (factlab.course_reference:
  a DataLoader over the datasets' padded `__getitem__`, the course's model with its manual, stored-mask
  attention), both on the course model (4 layers, 8 heads, 256 dims, block 128, dropout 0.1) with the course's
  settings (pretraining: batch 128, lr 6e-3; finetuning: batch 256, lr 6e-4). Each loop runs `--warmup-steps`
  uncounted steps, then trains for `--seconds` (at least `--min-steps` steps). Throughput counts, for both loops
  alike, the positions whose target is not PAD (the positions the loss is computed on), per second of wall clock
  of the counted steps, from one step boundary to another (the course loop: the start of a step, seen by a
  forward pre-hook; factlab: the end of a step, seen by train()'s on_step callback): data preparation, optimizer and
  everything else included.
- Decoding: time to answer every question of birth_dev.tsv: factlab's `answer_questions` (median of
  `--decode-repeats` runs) against the course's loop (one question at a time, 32 full forward passes each, on the
  course's model with the same weights). The course loop is timed on the first `--course-questions` questions (0:
  all) and scaled to the whole file; the answers of both are compared on those questions. The model is
  `--params` (a vanilla factlab or course checkpoint) or else an untrained course-size model with every weight
  random (seed `--seed`, so that the answers differ from question to question), whose answers hardly ever close
  before 32 characters: factlab's early stop gains nothing on it, a trained model's answers close after about 10.
- Memory: every measurement runs in its own process; peak RSS of that process (ru_maxrss), and on a GPU
  torch.cuda.max_memory_allocated during the measured work.

It prints a table and writes all numbers, with the machine they came from, as JSON (`--json`). `--quick` runs
everything with a tiny model and budgets of a fraction of a second, to check that the command works (the tests
do that); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

DATA_FILES = {"wiki": "wiki.txt", "train": "birth_places_train.tsv", "dev": "birth_dev.tsv"}
COURSE_SIZE = {"n_layer": 4, "n_head": 8, "n_embd": 256, "block_size": 128}
QUICK_SIZE = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 128}
DROPOUT = 0.1  # the course's embd, resid and attn dropout


def require_data_files(ap: argparse.ArgumentParser, data, names) -> None:
    """Stop with one line naming the data files (of DATA_FILES) that `data` lacks."""
    missing = [name for name in names if not (Path(data) / name).is_file()]
    if missing:
        ap.error(f"{data}: missing {', '.join(missing)}")
PHASES = ("pretrain", "finetune")
LOOPS = {"factlab": "factlab trainer", "course": "course loop"}


# ---------------------------------------------------------------- measurements (each in its own process)


class BudgetSpent(Exception):
    """Raised from the step clock to end a training loop once its time budget is spent."""


class StepClock:
    """Counts the steps between two step boundaries. For the course's loop the boundary is the start of a step,
    seen by a forward pre-hook on the model (it calls model(x, y) once per step, `step(x, y)`); for factlab's
    trainer it is the end of a step, seen by train()'s `on_step` callback (`step_ended(record)`): the end of one
    step is the start of the next, so both measure whole steps, batch preparation included. The first `warmup`
    steps are not counted; the window runs from the boundary after them to the first boundary at least `seconds`
    later (or the end of training), and every step completed inside it is counted."""

    def __init__(self, warmup: int, seconds: float, min_steps: int, device, loop: str):
        from factlab.vocab import PAD_ID

        self.loop = loop
        self.pad_id = PAD_ID
        self.warmup, self.seconds, self.min_steps = warmup, seconds, min_steps
        self.device = device
        self.calls = self.steps = 0
        self.start = self.end = None
        self.pending = None
        self.totals = {"target_tokens": 0, "input_tokens": 0, "examples": 0, "positions": 0}

    def now(self) -> float:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def forward_pre_hook(self, module, args, kwargs):
        self.step(args[0], args[1] if len(args) > 1 else kwargs["targets"])

    def boundary(self, now: float) -> None:
        """A step boundary: open the window after the warm-up, or close it once the budget is spent."""
        if self.calls == self.warmup:
            self.start = now
        elif self.start is not None and now - self.start >= self.seconds and self.steps >= self.min_steps:
            self.end = now
            raise BudgetSpent

    def step(self, x, y):
        """The course's loop: a step starts with this batch."""
        now = self.now()
        self._close_pending()
        self.boundary(now)
        if self.calls >= self.warmup:
            self.pending = {"target_tokens": int((y != self.pad_id).sum()),
                            "input_tokens": int((x != self.pad_id).sum()),
                            "examples": x.size(0), "positions": x.numel()}
        self.calls += 1

    def begin(self) -> None:
        """Before the first step: with no warm-up, factlab's window opens here (the course's at its first step)."""
        if self.warmup == 0 and self.loop == "factlab":
            self.start = self.now()

    def step_ended(self, record: dict) -> None:
        """factlab's trainer: a step ended; its record has the batch's counts (train()'s on_step)."""
        now = self.now()
        self.calls += 1
        if self.calls > self.warmup:
            batch = record["batch"]
            self.pending = {"target_tokens": batch["targets"], "input_tokens": batch["inputs"],
                            "examples": batch["examples"], "positions": batch["positions"]}
            self._close_pending()
        self.boundary(now)

    def _close_pending(self):
        if self.pending is not None:
            for key, value in self.pending.items():
                self.totals[key] += value
            self.steps += 1
            self.pending = None

    def finish(self):
        """Training ended by itself (all epochs done) before the budget was spent."""
        self.end = self.now()
        self._close_pending()

    def result(self) -> dict:
        if self.start is None or self.steps == 0:
            raise RuntimeError(f"no step was measured ({self.calls} steps in all, {self.warmup} of them warm-up): "
                               "the dataset is too small for the warm-up, or the budget too short")
        seconds = self.end - self.start
        t = self.totals
        return {"steps": self.steps, "warmup_steps": self.warmup, "seconds": round(seconds, 3), **t,
                "tokens_per_s": round(t["target_tokens"] / seconds, 1),
                "target_tokens_per_example": round(t["target_tokens"] / t["examples"], 2),
                "pad_fraction_of_positions": round(1 - t["input_tokens"] / t["positions"], 4),
                "seconds_per_step": round(seconds / self.steps, 4)}


def peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not Unix
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB on Linux


def prepare(spec: dict):
    """Device, threads, corpus and model of a measurement, as its spec says."""
    import torch

    from factlab import course_reference as course
    from factlab.data import CharCorruptionDataset
    from factlab.experiment import ModelOptions, load_model
    from factlab.io import read_text
    from factlab.model import GPT, GPTConfig
    from factlab.train import resolve_device

    device = resolve_device(spec["device"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    wiki = Path(spec["data"]) / DATA_FILES["wiki"]
    if spec.get("params"):
        model, corpus = load_model(spec["params"], "vanilla", wiki, ModelOptions())
    else:
        corpus = CharCorruptionDataset(read_text(wiki), spec["model"]["block_size"], seed=spec["seed"],
                                       source=str(wiki))
        torch.manual_seed(spec["seed"])
        model = GPT(GPTConfig(vocab_size=corpus.vocab_size, dropout=spec.get("dropout", DROPOUT), **spec["model"]))
        if spec.get("randomize"):
            course.randomize(model, spec["seed"]).train()
    return device, corpus, model.to(device)


def target_tokens_per_pass(dataset, loop: str, seed: int) -> int:
    """Non-PAD targets of one pass over the dataset, drawn the way `loop` draws its examples (factlab:
    `example(i, rng)`, unpadded; the course: `ds[i]`, padded to the block), from the same random state."""
    from factlab.vocab import PAD_ID

    if loop == "factlab":
        rng = random.Random(seed)
        return sum(int((dataset.example(i, rng)[1] != PAD_ID).sum()) for i in range(len(dataset)))
    if hasattr(dataset, "rng"):
        dataset.rng = random.Random(seed)
    total = sum(int((dataset[i][1] != PAD_ID).sum()) for i in range(len(dataset)))
    if hasattr(dataset, "rng"):
        dataset.rng = random.Random(seed)
    return total


def training_setup(spec: dict):
    """(device, dataset, model, batch size, run) of one training measurement: `run(on_step)` trains `model` (the
    factlab model, or the course model with the same initial weights) on `dataset` with that loop's own code and
    the course's settings for the phase, until its epochs are done or the step clock stops it."""
    from factlab import course_reference as course
    from factlab.data import NameDataset
    from factlab.io import read_text
    from factlab.recipes import Training, train_config
    from factlab.train import train

    device, corpus, model = prepare(spec)
    block = model.config.block_size
    if spec["phase"] == "pretrain":
        dataset = corpus
    else:
        path = Path(spec["data"]) / DATA_FILES["train"]
        dataset = NameDataset(corpus, read_text(path), source=str(path))
    if spec["loop"] == "factlab":
        stage = "pretrain" if spec["phase"] == "pretrain" else "scratch"
        config = train_config(stage, Training(precision=spec["precision"], compile=spec["compile"],
                                              batching=spec.get("batching"), micro_batch=spec.get("micro_batch")),
                              len(corpus), block, seed=spec["seed"], device=str(device))

        def run(on_step=None):
            train(model, dataset, config, progress=False, on_step=on_step)
    else:
        model = course.from_factlab(model)
        if spec["phase"] == "pretrain":
            config = course.TrainerConfig.course_pretrain(len(corpus), block, num_workers=spec["course_workers"])
        else:
            config = course.TrainerConfig.course_finetune(len(corpus), block, pretrained=False,
                                                          num_workers=spec["course_workers"])

        def run(on_step=None):  # the course's loop has no callback: it is seen by a forward pre-hook
            course.Trainer(model, dataset, config, device=device).train()
    return device, dataset, model, config.batch_size, run


def measure_training(spec: dict) -> dict:
    import torch

    device, dataset, model, batch_size, run = training_setup(spec)
    per_pass = target_tokens_per_pass(dataset, spec["loop"], spec["seed"])
    clock = StepClock(spec["warmup_steps"], spec["seconds"], spec["min_steps"], device, spec["loop"])
    if spec["loop"] != "factlab":
        model.register_forward_pre_hook(clock.forward_pre_hook, with_kwargs=True)
    setup_rss = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        clock.begin()
        run(clock.step_ended)
        clock.finish()
    except BudgetSpent:
        pass
    result = clock.result()
    result.update(batch_size=batch_size, target_tokens_per_pass=per_pass, examples_per_pass=len(dataset),
                  peak_rss_mb=peak_rss_mb(), setup_rss_mb=setup_rss, threads=torch.get_num_threads())
    if device.type == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result


def measure_decoding(spec: dict) -> dict:
    import torch

    from factlab import course_reference as course
    from factlab.data import parse_questions
    from factlab.decode import MAX_ANSWER_CHARS, answer_questions, prompt_ids
    from factlab.io import read_text

    device, corpus, model = prepare(spec)
    model.eval()
    path = Path(spec["data"]) / DATA_FILES["dev"]
    questions = parse_questions(read_text(path), str(path), require_answers=False)
    prompts = [prompt_ids(corpus.vocab, q.question, q.where) for q in questions]
    setup_rss = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if spec["decoder"] == "factlab":
        options = {"batch_size": spec["batch_size"]} if spec.get("batch_size") else {}  # else its default
        answer_questions(model, corpus.vocab, prompts[:8], **options)  # warm-up
        runs = []
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            answers = answer_questions(model, corpus.vocab, prompts, **options)
            runs.append(time.perf_counter() - start)
        result = {"questions": len(prompts), "questions_timed": len(prompts),
                  "seconds": round(statistics.median(runs), 3), "runs_s": [round(t, 3) for t in runs],
                  "batch_size": spec.get("batch_size") or "default", "answers": answers}
    else:
        model = course.from_factlab(model).eval()
        n = len(questions) if spec["questions"] == 0 else min(spec["questions"], len(questions))
        timed = [q.question for q in questions[:n]]
        course.answer_all(model, corpus.stoi, corpus.itos, timed[:1], device=device)  # warm-up
        start = time.perf_counter()
        answers = course.answer_all(model, corpus.stoi, corpus.itos, timed, device=device)
        elapsed = time.perf_counter() - start
        result = {"questions": len(questions), "questions_timed": n, "seconds_timed": round(elapsed, 3),
                  "seconds": round(elapsed / n * len(questions), 2), "extrapolated": n < len(questions),
                  "answers": answers}
    result.update(closed_answers=sum(len(a) < MAX_ANSWER_CHARS for a in result["answers"]),
                  peak_rss_mb=peak_rss_mb(), setup_rss_mb=setup_rss, threads=torch.get_num_threads())
    if device.type == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return result


def child_main(spec_json: str, out: str) -> int:
    from factlab import FactlabError

    spec = json.loads(spec_json)
    try:
        result = measure_training(spec) if spec["kind"] == "train" else measure_decoding(spec)
    except FactlabError as err:  # a bad file or checkpoint: one line, as factlab's CLI does
        print(f"error: {err}", file=sys.stderr)
        return 1
    Path(out).write_text(json.dumps(result), encoding="utf-8")
    return 0


# ---------------------------------------------------------------- the parent: runs, table, JSON


def run_child(spec: dict, label: str) -> dict:
    print(f"  {label} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="factlab-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec), "--child-out", str(out)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            raise SystemExit(f"benchmark: {label} failed (exit code {proc.returncode}):\n" + "\n".join(tail))
        return json.loads(out.read_text(encoding="utf-8"))


def machine(device: str, threads: int | None) -> dict:
    import torch

    from factlab.train import resolve_device

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    resolved = resolve_device(device)
    info = {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "torch": torch.__version__,
            "torch_threads": threads or torch.get_num_threads(), "device": resolved.type,
            "gpu": torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else None,
            "python": platform.python_version(), "platform": platform.platform(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def fmt_mem(result: dict) -> str:
    gpu = f" (GPU {result['peak_gpu_mb']:,.0f})" if "peak_gpu_mb" in result else ""
    return f"{result['peak_rss_mb']:,.0f}{gpu}" if result.get("peak_rss_mb") is not None else "?"


def table(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    size = report["model"]
    lines = [f"factlab benchmark: {m['cpu']}, {m['usable_cores']} cores, torch {m['torch']}, device {m['device']}"
             + (f" ({m['gpu']})" if m["gpu"] else "") + f", {m['torch_threads']} torch threads",
             f"model: {size['n_layer']} layers, {size['n_head']} heads, {size['n_embd']} dims, block "
             f"{size['block_size']}, dropout {s['dropout']}; factlab trains in {s['precision']}"
             f"{' compiled' if s.get('compile') else ''}, the course in fp32"
             + ("   [--quick: numbers mean nothing]" if s["quick"] else ""),
             ""]
    rows = [("", "factlab", "course", "ratio", "peak RSS MB factlab / course", "measured")]
    for phase in PHASES:
        r = report["train"].get(phase)
        if r is None:
            continue
        f, c = r["factlab"], r["course"]
        rows.append((f"{phase}, non-PAD target tokens/s (batch {f['batch_size']})", f"{f['tokens_per_s']:,.0f}",
                     f"{c['tokens_per_s']:,.0f}", f"{r['ratio']:.2f}x", f"{fmt_mem(f)} / {fmt_mem(c)}",
                     f"{f['steps']} / {c['steps']} steps in {f['seconds']:.0f} / {c['seconds']:.0f} s"))
    d = report.get("decode")
    if d is not None:
        f, c = d["factlab"], d["course"]
        note = (f"course: {c['questions_timed']} questions in {c['seconds_timed']:.1f} s, scaled to {c['questions']}"
                if c["extrapolated"] else f"course: all {c['questions']} questions")
        rows.append((f"answer {f['questions']} dev questions, seconds", f"{f['seconds']:,.2f}",
                     f"{c['seconds']:,.1f}", f"{d['ratio']:.1f}x", f"{fmt_mem(f)} / {fmt_mem(c)}",
                     f"factlab median of {len(f['runs_s'])}; {note}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i in (0, 5) else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for phase in PHASES:
        r = report["train"].get(phase)
        if r is not None:
            lines.append(f"{phase}: non-PAD targets per example seen: factlab "
                         f"{r['factlab']['target_tokens_per_example']}"
                         f", course {r['course']['target_tokens_per_example']}; per pass over the dataset: "
                         f"{r['factlab']['target_tokens_per_pass']:,} / {r['course']['target_tokens_per_pass']:,}"
                         f" ({'same' if r['same_count_definition'] else 'DIFFERENT'}); course positions on PAD: "
                         f"{r['course']['pad_fraction_of_positions']:.0%}, factlab: "
                         f"{r['factlab']['pad_fraction_of_positions']:.0%}")
    if d is not None:
        lines.append(f"decoding: answers identical on {d['answers_agree']} of {d['answers_compared']} questions; "
                     f"answers closed before {32} characters: {d['factlab']['closed_answers']} of "
                     f"{d['factlab']['questions']} ({d['model']})")
    load = m.get("load_average_at_start")
    if load and load[0] > 0.25 * m["usable_cores"]:
        lines.append(f"warning: load average {load[0]} at the start on {m['usable_cores']} cores: other work "
                     "shared the machine, timings are contended")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    ap.add_argument("--data", help="folder with wiki.txt, birth_places_train.tsv and birth_dev.tsv")
    ap.add_argument("--seconds", type=float, help="training budget of each of the four training measurements, "
                                                  "after warm-up (default 60; --quick 0.3)")
    ap.add_argument("--warmup-steps", type=int, help="uncounted steps before each training measurement (default 3)")
    ap.add_argument("--min-steps", type=int, help="counted steps at least, whatever the budget (default 3)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--threads", type=int, help="torch threads in every measurement (default: torch's own)")
    ap.add_argument("--json", default="runs/benchmark.json", help="where to write the results (default %(default)s)")
    ap.add_argument("--params", help="a vanilla checkpoint to decode with (default: an untrained model)")
    ap.add_argument("--course-questions", type=int,
                    help="dev questions to time the course's decoding loop on, 0 for all (default 100)")
    ap.add_argument("--decode-repeats", type=int, help="runs of factlab's decoder, median reported (default 3)")
    ap.add_argument("--decode-batch-size", type=int,
                    help="questions per batch of factlab's decoder (default: answer_questions' own default)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="factlab trainer's precision (the course loop is always fp32; default %(default)s)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile factlab's model (compiling happens in the uncounted warm-up steps)")
    ap.add_argument("--batching", choices=("course", "length"), help="factlab trainer's batches (default: the "
                    "trainer's, the course's batches in file order; measurements before 2026-12-02 used length)")
    ap.add_argument("--micro-batch", type=int, help="factlab trainer's rows per pass (default: the whole batch)")
    ap.add_argument("--course-workers", type=int, default=0,
                    help="DataLoader workers of the course loop (the course asks for 4; default %(default)s)")
    ap.add_argument("--only", default="pretrain,finetune,decode",
                    help="comma-separated subset of pretrain, finetune, decode (default all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny model and budgets: checks the command works")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args.child, args.child_out)

    if args.data is None:
        ap.error("--data is required (the folder with wiki.txt, birth_places_train.tsv, birth_dev.tsv)")
    data = Path(args.data).resolve()
    require_data_files(ap, data, DATA_FILES.values())
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(only) - {*PHASES, "decode"}
    if unknown or not only:
        ap.error(f"--only: unknown {', '.join(sorted(unknown)) or 'empty list'}; "
                 "choose from pretrain, finetune, decode")
    if args.params and not Path(args.params).is_file():
        ap.error(f"--params {args.params}: no such file")
    try:
        from factlab import FactlabError
        from factlab.train import resolve_device

        resolve_device(args.device)
    except FactlabError as err:
        ap.error(str(err))
    quick = args.quick
    pick = lambda value, normal, fast: value if value is not None else (fast if quick else normal)  # noqa: E731
    settings = {"seconds": pick(args.seconds, 60.0, 0.3), "warmup_steps": pick(args.warmup_steps, 3, 1),
                "min_steps": pick(args.min_steps, 3, 1), "course_questions": pick(args.course_questions, 100, 5),
                "decode_repeats": pick(args.decode_repeats, 3, 1), "decode_batch_size": args.decode_batch_size,
                "course_workers": args.course_workers, "precision": args.precision,
                "compile": args.compile, "batching": args.batching, "micro_batch": args.micro_batch,
                "dropout": DROPOUT, "seed": args.seed, "quick": quick, "device": args.device, "threads": args.threads,
                "params": str(Path(args.params).resolve()) if args.params else None, "data": str(data)}
    size = dict(QUICK_SIZE if quick else COURSE_SIZE)
    if min(settings["warmup_steps"], settings["course_questions"]) < 0 or settings["min_steps"] < 1 \
            or settings["decode_repeats"] < 1 or settings["seconds"] < 0 or (args.decode_batch_size or 1) < 1 \
            or (args.micro_batch or 1) < 1:
        ap.error("budgets and counts must not be negative (--min-steps and --decode-repeats at least 1)")

    report = {"command": sys.argv if argv is None else ["benchmarks/run.py", *argv],
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(args.device, args.threads),
              "settings": settings, "model": size, "train": {}, "decode": None}
    common = {"data": str(data), "device": args.device, "threads": args.threads, "seed": args.seed,
              "model": size, "dropout": DROPOUT}
    n_train = sum(p in only for p in PHASES)
    plan = [f"{2 * n_train} training runs of {settings['seconds']:g} s after {settings['warmup_steps']} warm-up "
            "steps"] if n_train else []
    plan += ["decoding"] if "decode" in only else []
    print(f"benchmark: {', then '.join(plan)}; each measurement in its own process", file=sys.stderr, flush=True)
    for phase in PHASES:
        if phase not in only:
            continue
        results = {}
        for loop, name in LOOPS.items():
            spec = {**common, "kind": "train", "phase": phase, "loop": loop, "seconds": settings["seconds"],
                    "warmup_steps": settings["warmup_steps"], "min_steps": settings["min_steps"],
                    "course_workers": settings["course_workers"], "precision": settings["precision"],
                    "compile": settings["compile"], "batching": settings["batching"],
                    "micro_batch": settings["micro_batch"]}
            results[loop] = run_child(spec, f"{phase}, {name}")
        report["train"][phase] = {
            **results, "ratio": ratio(results["factlab"]["tokens_per_s"], results["course"]["tokens_per_s"]),
            "same_count_definition": results["factlab"]["target_tokens_per_pass"]
            == results["course"]["target_tokens_per_pass"]}
    problems = [f"{phase}: the two loops count {r['factlab']['target_tokens_per_pass']} and "
                f"{r['course']['target_tokens_per_pass']} non-PAD targets in one pass over the same examples"
                for phase, r in report["train"].items() if not r["same_count_definition"]]

    if "decode" in only:
        results = {}
        for decoder, name in (("factlab", "factlab's answer_questions"), ("course", "the course's one-by-one loop")):
            spec = {**common, "kind": "decode", "decoder": decoder, "params": settings["params"], "randomize": True,
                    "repeats": settings["decode_repeats"], "questions": settings["course_questions"],
                    "batch_size": settings["decode_batch_size"]}
            results[decoder] = run_child(spec, f"decoding, {name}")
        f, c = results["factlab"], results["course"]
        compared = c["questions_timed"]
        agree = sum(a == b for a, b in zip(f["answers"][:compared], c["answers"]))
        report["decode"] = {"factlab": f, "course": c, "ratio": ratio(c["seconds"], f["seconds"]),
                            "answers_compared": compared, "answers_agree": agree,
                            "model": f"checkpoint {settings['params']}" if settings["params"]
                            else f"untrained model, every weight random, seed {args.seed}"}
        if agree != compared:
            problems.append(f"decoding: the answers differ on {compared - agree} of {compared} questions")

    ratios = {f"{phase}_tokens_per_s": r["ratio"] for phase, r in report["train"].items()}
    if report["decode"] is not None:
        ratios["decode_time"] = report["decode"]["ratio"]
    report["ratios"] = ratios
    report["problems"] = problems
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    from factlab.io import write_text_atomic

    write_text_atomic(args.json, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(table(report))
    print(f"results written to {args.json}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
