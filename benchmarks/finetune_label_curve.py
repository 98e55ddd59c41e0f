"""How accurate the fine-tuned text encoder gets on SST-2 as the labels grow, up to the whole pool.

The ceiling that the issue's "0.85 on SST-2 with 500 labels or fewer" is measured against: for
each ``labels:epochs`` point, that many pool sentences are drawn at random (seeded) from the SST-2
pool (``_data.load_sst2``: 20,000 training sentences of 5+ words), and
:class:`labella.learners.finetune.ClassifierFineTuner` (one member, linear layer, otherwise the
product's settings) fine-tunes MiniLM on them; accuracy is on the 872 test sentences. Random
labels, not actively picked ones: this measures the learner, not the strategy.

    .venv/bin/python benchmarks/finetune_label_curve.py 500:8 2000:4 20000:2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _data import load_sst2
from labella.learners.finetune import ClassifierFineTuner


def parse_point(text: str) -> tuple[int, int]:
    labels, _, epochs = text.partition(":")
    if not (labels.isdigit() and epochs.isdigit() and int(labels) > 0 and int(epochs) > 0):
        raise argparse.ArgumentTypeError(f"expected LABELS:EPOCHS such as 500:8, got {text!r}")
    return int(labels), int(epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("points", type=parse_point, nargs="+", help="LABELS:EPOCHS")
    parser.add_argument("--seed", type=int, default=0, help="label sample and learner seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    task = load_sst2()
    texts, labels = task.pool.texts, task.pool.labels
    print(task.description, flush=True)
    for n, epochs in args.points:
        rows = np.random.default_rng(args.seed).choice(
            len(texts), size=min(n, len(texts)), replace=False
        )
        started = time.perf_counter()
        learner = ClassifierFineTuner(
            layer="linear",
            n_members=1,
            epochs=epochs,
            random_state=args.seed,
            n_threads=args.threads,
        )
        learner.fit([texts[i] for i in rows], labels[rows], n_classes=2)
        predicted = learner.predict_proba(task.test.texts).argmax(axis=1)
        accuracy = float(np.mean(predicted == task.test.labels))
        row = {"labels": len(rows), "epochs": epochs, "accuracy": round(accuracy, 4),
               "seconds": round(time.perf_counter() - started)}  # fmt: skip
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
