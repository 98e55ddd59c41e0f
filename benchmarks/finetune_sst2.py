"""SetFit fine-tuning vs the frozen encoder on SST-2, at a few label budgets.

For each budget N, N labelled sentences are drawn at random (seeded) from the SST-2 training pool
(``_data.load_sst2``: sentences of 5+ words, deduplicated, disjoint from the test set). Both
learners get the same labels and the same linear head (``make_head("linear")``):

- frozen: all-MiniLM-L6-v2 embeddings as they ship, then the head;
- setfit: :class:`labella.learners.finetune.SetFitLearner` (contrastive pair fine-tuning of a copy
  of MiniLM, then the head on the fine-tuned embeddings).

Accuracy is on SST-2 test.tsv (the 872 GLUE validation sentences). Training time is wall-clock on
this machine, on every CPU the process may use; the frozen baseline's time covers encoding the
labelled texts and fitting the head, and the test set's encoding is timed separately.

    .venv/bin/python benchmarks/finetune_sst2.py --sizes 64 200 500
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from _data import load_sst2
from labella.learners.encoders import get_text_encoder
from labella.learners.finetune import SetFitLearner, available_cpus
from labella.learners.heads import make_head


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 200, 500])
    parser.add_argument("--seed", type=int, default=0, help="label sample and learner seed")
    parser.add_argument("--n-iterations", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return parser.parse_args()


def sample_labels(n_pool: int, size: int, seed: int) -> np.ndarray:
    if size > n_pool:
        raise SystemExit(f"--sizes: {size} is more than the {n_pool} pool sentences")
    return np.random.default_rng(seed).choice(n_pool, size=size, replace=False)


class StepReporter:
    """Prints the training rate now and then: a run can take many minutes on a small CPU."""

    def __init__(self, size: int, every: int = 50) -> None:
        self.size = size
        self.every = every
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if done % self.every and done != total:
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done * (total - done)
        print(
            f"  N={self.size}: step {done}/{total}, {elapsed:.0f} s, about {eta:.0f} s left",
            flush=True,
        )


def run_budget(
    size: int,
    *,
    args: argparse.Namespace,
    pool_texts: list[str],
    pool_labels: np.ndarray,
    test_texts: list[str],
    test_labels: np.ndarray,
    frozen_test: np.ndarray,
) -> dict[str, Any]:
    chosen = sample_labels(len(pool_texts), size, args.seed)
    texts = [pool_texts[i] for i in chosen]
    labels = pool_labels[chosen]

    encoder = get_text_encoder()
    started = time.perf_counter()
    frozen_head = make_head("linear", n_classes=2, random_state=args.seed)
    frozen_head.fit(encoder.encode(texts), labels)
    frozen_seconds = time.perf_counter() - started
    frozen_accuracy = float((frozen_head.predict(frozen_test) == test_labels).mean())

    learner = SetFitLearner(
        n_iterations=args.n_iterations,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_pairs=args.max_pairs,
        random_state=args.seed,
    )
    started = time.perf_counter()
    learner.fit(texts, labels, n_classes=2, progress=StepReporter(size))
    setfit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    predicted = learner.predict(test_texts)
    predict_seconds = time.perf_counter() - started
    setfit_accuracy = float((predicted == test_labels).mean())
    return {
        "labels": size,
        "positive_share": float(labels.mean()),
        "frozen_accuracy": frozen_accuracy,
        "setfit_accuracy": setfit_accuracy,
        "frozen_train_s": frozen_seconds,
        "setfit_train_s": setfit_seconds,
        "setfit_predict_test_s": predict_seconds,
        "pairs": learner.n_pairs_,
        "steps": learner.n_steps_,
        "final_loss": learner.train_losses_[-1],
    }


def main() -> None:
    args = parse_args()
    task = load_sst2(seed=args.seed)
    print(task.description, flush=True)
    print(
        f"SetFit: n_iterations={args.n_iterations} epochs={args.epochs} "
        f"batch_size={args.batch_size} lr={args.learning_rate} max_pairs={args.max_pairs}; "
        f"{available_cpus()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    encoder = get_text_encoder()
    started = time.perf_counter()
    frozen_test = encoder.encode(task.test.texts)
    print(f"frozen MiniLM: test set encoded in {time.perf_counter() - started:.1f} s", flush=True)

    rows = []
    for size in args.sizes:
        row = run_budget(
            size,
            args=args,
            pool_texts=task.pool.texts,
            pool_labels=task.pool.labels,
            test_texts=task.test.texts,
            test_labels=task.test.labels,
            frozen_test=frozen_test,
        )
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}\n")
    print(
        "| labels | frozen MiniLM + linear | SetFit + linear | gain | frozen train s "
        "| SetFit train s | SetFit pairs / steps |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['labels']} | {row['frozen_accuracy']:.3f} | {row['setfit_accuracy']:.3f} "
            f"| {row['setfit_accuracy'] - row['frozen_accuracy']:+.3f} "
            f"| {row['frozen_train_s']:.1f} | {row['setfit_train_s']:.0f} "
            f"| {row['pairs']:,} / {row['steps']:,} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": None}, "rows": rows}))


if __name__ == "__main__":
    main()
