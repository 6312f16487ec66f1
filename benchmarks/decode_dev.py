"""Time answering every question of an evaluation file: factlab's batched KV-cache decoder against the course's
loop (one question at a time, full recomputation for each of up to 32 characters), in one run on one machine.

    python benchmarks/decode_dev.py WIKI PARAMS EVAL_TSV [--variant vanilla] [--reference_questions 100] [--json out.json]

The course loop is timed on the first --reference_questions questions (all of them with 0) and its per-question
time is scaled to the whole file; both decoders' answers are compared on those questions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

from factlab.checkpoint import write_text_atomic
from factlab.data import parse_questions, read_text
from factlab.decode import answer_one_by_one, answer_questions, prompt_ids
from factlab.experiment import ModelOptions, load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wiki")
    ap.add_argument("params")
    ap.add_argument("eval_tsv")
    ap.add_argument("--variant", default="vanilla")
    ap.add_argument("--reference_questions", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()

    model, corpus = load_model(args.params, args.variant, args.wiki, ModelOptions())
    questions = parse_questions(read_text(args.eval_tsv), args.eval_tsv, require_answers=False)
    prompts = [prompt_ids(corpus.vocab, q.question, q.where) for q in questions]

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        answers = answer_questions(model, corpus.vocab, prompts)
        times.append(time.perf_counter() - start)
    batched = statistics.median(times)

    n_ref = len(prompts) if args.reference_questions == 0 else min(args.reference_questions, len(prompts))
    start = time.perf_counter()
    reference = answer_one_by_one(model, corpus.vocab, prompts[:n_ref])
    course_per_question = (time.perf_counter() - start) / n_ref

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads",
        "questions": len(prompts),
        "factlab_batched_s": round(batched, 3),
        "factlab_runs_s": [round(t, 3) for t in times],
        "course_loop_s_estimated": round(course_per_question * len(prompts), 2),
        "course_loop_questions_timed": n_ref,
        "speedup": round(course_per_question * len(prompts) / batched, 1),
        "answers_identical_on_timed_questions": reference == answers[:n_ref],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    if not result["answers_identical_on_timed_questions"]:
        sys.exit("batched and one-by-one answers differ")


if __name__ == "__main__":
    main()
