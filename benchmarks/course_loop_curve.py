"""The course's own loop (factlab.course_reference: its model, dataset draws and Trainer, fp32) pretraining vanilla
for --max_steps steps, one loss per step as JSON lines: the curve factlab's course runs are compared against."""

import argparse
import json
import time

import torch

from factlab import course_reference as course
from factlab.data import CharCorruptionDataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="wiki.txt")
    parser.add_argument("--out", required=True, help="the JSON-lines loss curve to write")
    parser.add_argument("--max_steps", type=int, default=920)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    with open(args.corpus, encoding="utf-8") as f:
        ds = CharCorruptionDataset(f.read(), 128, seed=0)
    torch.manual_seed(0)
    model = course.GPT(course.CourseConfig(ds.vocab_size, 128, n_layer=4, n_head=8, n_embd=256))
    config = course.TrainerConfig.course_pretrain(len(ds), 128)
    steps_per_epoch = -(-len(ds) // config.batch_size)
    log, start, step = open(args.out, "w", buffering=1), time.time(), [0]
    forward = model.forward

    def logged(*a, **k):  # the course's Trainer has no callback: its forward calls are seen here
        step[0] += 1
        if step[0] > args.max_steps:  # stop before the forward past the last step, so the file holds max_steps rows
            raise StopIteration
        logits, loss = forward(*a, **k)
        log.write(json.dumps({"step": step[0], "epoch": (step[0] - 1) // steps_per_epoch + 1,
                              "loss": round(loss.item(), 5), "elapsed_s": round(time.time() - start, 2)}) + "\n")
        return logits, loss

    model.forward = logged
    try:
        course.Trainer(model, ds, config, device=args.device).train()
    except StopIteration:
        pass
    log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
