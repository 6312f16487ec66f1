"""Mixed pretraining: span corruption of wiki.txt with the training questions mixed into every epoch.

    # from scratch, the cpu-fast model and settings (README, "A fast CPU recipe", attempt 5)
    python benchmarks/mixed_pretraining.py --data ../shared/data/birthplaces --out mixed.params \
        --epochs 240 --max_minutes 54
    # or continue a pretrained checkpoint for a few epochs (attempt 4c)
    python benchmarks/mixed_pretraining.py --data ../shared/data/birthplaces --out more.params \
        --from pretrain.params --epochs 20 --learning_rate 6e-4 --warmup_tokens 0

Allen-Zhu and Li ("Physics of Language Models, Part 3.1") find that questions seen during pretraining make the
stored facts of *other* people extractable by question. The README reports what this gave on the real data
within an hour of a 2-core CPU: less than pretraining alone. `factlab pretrain --mix_questions T --question_share F`
does the same from scratch; this script also continues a pretrained checkpoint (`--from`). Evaluate the result
with `factlab evaluate` (it answers questions already) or finetune it first.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace

import torch

from factlab import FactlabError, checkpoint, experiment
from factlab.data import NameDataset, QuestionMixture
from factlab.io import read_text
from factlab.model import GPT
from factlab.recipes import FACTLAB_TRAINER, RECIPES, Training, train_config
from factlab.train import train


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with wiki.txt and birth_places_train.tsv")
    ap.add_argument("--out", required=True, help="checkpoint to write")
    ap.add_argument("--from", dest="start", help="continue this pretrained checkpoint instead of a fresh model")
    ap.add_argument("--epochs", type=int, default=240, help="epochs of the mixture; the cosine spans them all")
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--learning_rate", type=float, default=4e-3)
    ap.add_argument("--warmup_tokens", type=int, help="default: the course's")
    ap.add_argument("--max_minutes", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    wiki = f"{args.data}/wiki.txt"
    if args.start:
        model, corpus = experiment.load_model(args.start, experiment.checkpoint_variant(args.start), wiki,
                                              experiment.ModelOptions())
    else:
        config = RECIPES["cpu-fast"].model.config("vanilla", 0)
        corpus = experiment.pretraining_dataset(wiki, config.block_size)
        torch.manual_seed(args.seed)
        model = GPT(replace(config, vocab_size=corpus.vocab_size))
    questions_path = f"{args.data}/birth_places_train.tsv"
    questions = NameDataset(corpus, read_text(questions_path), source=questions_path)
    mixture = QuestionMixture(corpus, questions, len(questions) / (len(questions) + len(corpus)))  # each once
    # factlab's trainer options, as when the experiments of docs/recipes.md ran
    training = FACTLAB_TRAINER.overridden_by(Training(
        decay_epochs=args.epochs, max_epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, max_minutes=args.max_minutes, warmup_tokens=args.warmup_tokens))
    tconf = train_config("pretrain", training, len(mixture), model.config.block_size, args.seed, args.device)
    result = train(model, mixture, tconf, metrics_path=f"{args.out}.metrics.jsonl")
    checkpoint.save(args.out, model, corpus.vocab, {"stage": "mixed pretraining", "from": args.start,
                                                    "train": asdict(tconf), "result": result.to_dict()})
    print(f"mixed pretraining: {result.epochs_done} epochs of {len(corpus)} documents and {len(mixture) - len(corpus)} "
          f"questions, final loss {result.final_loss:.4f}, {result.seconds:.1f} s; wrote {args.out}")


if __name__ == "__main__":
    try:
        main()
    except FactlabError as err:
        sys.exit(f"error: {err}")
