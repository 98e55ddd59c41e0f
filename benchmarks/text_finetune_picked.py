"""Text: fine-tune the encoder on exactly the labels the default strategy picked.

The text counterpart of ``image_finetune.py``: the loop picks labels with frozen MiniLM and the
linear head (a seed set of 20 by k-means cold start, batches of 20, the default strategy
``cluster_margin``), then two learners are trained on the first ``--labels`` picks and scored on
the task's test set: the linear head on the frozen embeddings (what the loop used),
the fine-tuning learner (``--method classifier``, the product's default,
:class:`labella.learners.finetune.ClassifierFineTuner`: end to end with cross-entropy; or
``--method setfit``, :class:`~labella.learners.finetune.SetFitLearner`: contrastive pairs), and the
project's linear head refitted on the fine-tuned encoder's embeddings (what the
``finetune_encoder`` job leaves the project with).

    .venv/bin/python benchmarks/text_finetune_picked.py --task sst2 --labels 500
    .venv/bin/python benchmarks/text_finetune_picked.py --task sst2 --labels 250 --method setfit \
        --max-pairs 8000

With ``--self-training`` (what new single-label projects do: :mod:`labella.learners.self_training`)
the project's head also learns from its confident predictions on the unlabeled pool: in the loop
that picks (so it ranks with the self-trained head, as a project does), on the frozen embeddings
and on the fine-tuned ones.

With ``--continue-to N`` labeling then goes on as the project does after its fine-tuning (the pool
re-encoded by the fine-tuned encoder, the same strategy picking batches of 20 for the linear head)
up to N labels, and the test accuracy at each step is reported.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from _data import TASKS
from label_efficiency import embed_task
from labella.learners.finetune import ClassifierFineTuner, SetFitLearner, TextFineTuner
from labella.learners.heads import Head, make_head
from labella.learners.self_training import SelfTrainedHead, sample_rows
from labella.services import simulation as sim
from labella.strategies import fit_clusters, get_strategy

HERE = Path(__file__).resolve().parent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="sst2")
    parser.add_argument("--labels", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", default="cluster_margin")
    parser.add_argument("--method", choices=("classifier", "setfit"), default="classifier")
    parser.add_argument("--max-pairs", type=int, default=8000, help="setfit only")
    parser.add_argument(
        "--layer", choices=("cosine", "linear"), default="cosine", help="classifier only"
    )
    parser.add_argument(
        "--members",
        type=int,
        default=None,
        help="encoders fine-tuned side by side (the method's default if unset: 2 for the "
        "classifier, 1 for SetFit)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="the method's default if unset")
    parser.add_argument(
        "--self-training",
        action="store_true",
        help="the project's head also learns from its confident predictions on the unlabeled "
        "pool, as new single-label projects train (off by default, so that the commands in "
        "RESULTS.md from before it reproduce)",
    )
    parser.add_argument("--cache-dir", type=Path, default=HERE / "out" / "cache")
    parser.add_argument(
        "--first-finetune-at",
        type=int,
        default=0,
        help="fine-tune once already at this many labels, as a project with auto_finetune_at set "
        "to it does, and pick the labels from there to --labels with the fine-tuned encoder's "
        "embeddings; the fine-tuning at --labels then starts again from the base encoder",
    )
    parser.add_argument(
        "--continue-to",
        type=int,
        default=0,
        help="after the fine-tuning, go on labeling as the project does (the same strategy, "
        "batches of 20, the linear head on the fine-tuned encoder's embeddings) up to this many "
        "labels, scoring each step",
    )
    args = parser.parse_args(argv)

    task = TASKS[args.task]()
    X_pool, X_test = embed_task(task, args.cache_dir)
    y_pool, y_test = task.pool.labels, task.test.labels
    n_classes = len(task.pool.classes)
    seed_set = sim.select_seed_set(X_pool, 20, cold_start="kmeans_cold_start", seed=args.seed)
    first = args.first_finetune_at if 0 < args.first_finetune_at < args.labels else args.labels
    picked = pick_labels(
        X_pool,
        y_pool,
        seed_set,
        to=first,
        seed=args.seed,
        strategy=args.strategy,
        rng_tag=0,
        self_training=args.self_training,
    )
    first_seconds = 0.0
    if first < args.labels:
        started = time.perf_counter()
        early = make_learner(args)
        early.fit([task.pool.texts[i] for i in picked], y_pool[picked], n_classes=n_classes)
        first_seconds = time.perf_counter() - started
        picked = pick_labels(
            early.encode(task.pool.texts),
            y_pool,
            picked,
            to=args.labels,
            seed=args.seed,
            strategy=args.strategy,
            rng_tag=1,
            self_training=args.self_training,
        )
    project_head = ProjectHead(n_classes, seed=args.seed, self_training=args.self_training)
    frozen = project_head.accuracy(X_pool.__getitem__, len(X_pool), y_pool, picked, X_test, y_test)
    started = time.perf_counter()
    learner = make_learner(args)
    learner.fit([task.pool.texts[i] for i in picked], y_pool[picked], n_classes=n_classes)
    seconds = time.perf_counter() - started
    test_vectors = learner.encode(task.test.texts)
    tuned = float((learner.head_.predict_proba(test_vectors).argmax(1) == y_test).mean())
    # what the product then trains: the project's linear head on the re-encoded items
    product = project_head.accuracy(
        lambda rows: learner.encode([task.pool.texts[i] for i in rows]),
        len(X_pool),
        y_pool,
        picked,
        test_vectors,
        y_test,
    )
    row = {
        "task": args.task,
        "strategy": args.strategy,
        "seed": args.seed,
        "labels": args.labels,
        "method": args.method,
        "epochs": learner.epochs,
        "members": learner.n_members,
        "self_training": args.self_training,
        **({"max_pairs": args.max_pairs} if args.method == "setfit" else {"layer": args.layer}),
        "frozen_linear": round(frozen, 4),
        "finetuned": round(tuned, 4),
        "finetuned_encoder_linear_head": round(product, 4),
        "fit_seconds": round(seconds),
    }
    if first < args.labels:
        row["first_finetune_at"] = first
        row["first_fit_seconds"] = round(first_seconds)
    if args.continue_to > args.labels:
        row["after_finetune"] = continue_on_finetuned(
            learner,
            task,
            picked,
            to=args.continue_to,
            seed=args.seed,
            strategy=args.strategy,
            self_training=args.self_training,
        )
    print(json.dumps(row))
    return 0


class ProjectHead:
    """The project's linear head as its training fits it: on the picked rows, self-training on
    the rest of the pool when the project does."""

    def __init__(self, n_classes: int, *, seed: int, self_training: bool) -> None:
        self.n_classes = n_classes
        self.seed = seed
        self.self_training = self_training

    def new(self) -> Head:
        return make_head("linear", n_classes=self.n_classes, random_state=self.seed)

    def accuracy(
        self,
        encode: Callable[[np.ndarray], np.ndarray],
        n_pool: int,
        y_pool: np.ndarray,
        picked: np.ndarray,
        X_test: np.ndarray,
        y_test: np.ndarray,
    ) -> float:
        """Test accuracy of the head fitted on the pool rows ``picked``; ``encode(rows)`` gives
        the vectors of pool rows (the unlabeled ones are encoded only for self-training)."""
        model: Head | SelfTrainedHead
        if self.self_training:
            unlabeled = encode(sample_rows(np.setdiff1d(np.arange(n_pool), picked)))
            model = SelfTrainedHead(self.new, unlabeled)
        else:
            model = self.new()
        model.fit(encode(picked), y_pool[picked])
        return float((model.predict(X_test) == y_test).mean())


def make_learner(args: argparse.Namespace) -> TextFineTuner:
    given = {"epochs": args.epochs, "n_members": args.members}
    settings = {key: value for key, value in given.items() if value is not None}
    if args.method == "setfit":
        return SetFitLearner(random_state=args.seed, max_pairs=args.max_pairs, **settings)
    return ClassifierFineTuner(random_state=args.seed, layer=args.layer, **settings)


def pick_labels(
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    start: np.ndarray,
    *,
    to: int,
    seed: int,
    strategy: str,
    rng_tag: int,
    self_training: bool = True,
) -> np.ndarray:
    """The pool indices labeled when the loop goes on from ``start`` (in order) to ``to`` labels:
    the strategy picking batches of 20 for the linear head on ``X_pool`` (self-trained on the
    unlabeled rest with ``self_training``), with the clusters of ``X_pool``; the picks do not
    depend on the test set."""
    n_classes = int(y_pool.max()) + 1
    order = [np.asarray(start)]
    sim.run_loop(
        X_pool,
        y_pool,
        X_pool[:10],
        y_pool[:10],
        strategy=get_strategy(strategy),
        seed_set=order[0],
        schedule=sim.label_schedule(initial=len(order[0]), batch=20, budget=to),
        make_model=lambda: make_head("linear", n_classes=n_classes, random_state=seed),
        clusters=fit_clusters(X_pool, sim.default_n_clusters(len(X_pool)), random_state=0),
        rng=np.random.default_rng([seed, zlib.crc32(strategy.encode()), *([rng_tag] * rng_tag)]),
        on_pick=order.append,
        self_training=self_training,
    )
    return np.concatenate(order)[:to]


def continue_on_finetuned(
    learner: TextFineTuner,
    task: object,
    picked: np.ndarray,
    *,
    to: int,
    seed: int,
    strategy: str,
    self_training: bool,
) -> dict[int, float]:
    """Test accuracy at each label count from ``len(picked)`` to ``to`` as labeling goes on after
    the fine-tuning: the pool re-encoded by the fine-tuned encoder (as the job leaves the
    project), its clusters refitted, and the strategy picking batches of 20 for the linear head."""
    pool_texts, test_texts = task.pool.texts, task.test.texts  # type: ignore[attr-defined]
    y_pool, y_test = task.pool.labels, task.test.labels  # type: ignore[attr-defined]
    n_classes = len(task.pool.classes)  # type: ignore[attr-defined]
    X_pool, X_test = learner.encode(pool_texts), learner.encode(test_texts)
    schedule = sim.label_schedule(initial=len(picked), batch=20, budget=to)
    curve = sim.run_loop(
        X_pool,
        y_pool,
        X_test,
        y_test,
        strategy=get_strategy(strategy),
        seed_set=picked,
        schedule=schedule,
        make_model=lambda: make_head("linear", n_classes=n_classes, random_state=seed),
        clusters=fit_clusters(X_pool, sim.default_n_clusters(len(X_pool)), random_state=0),
        rng=np.random.default_rng([seed, zlib.crc32(strategy.encode()), 1]),
        self_training=self_training,
    )
    return {int(n): round(float(a), 4) for n, a in zip(schedule, curve, strict=True)}


if __name__ == "__main__":
    raise SystemExit(main())
