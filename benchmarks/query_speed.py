"""Query speed: one batch of 100 from pools of 10k-1M items, against modAL and scikit-activeml.

Every timed call re-scores the whole pool from planted class probabilities (a model's
``predict_proba`` output), masks the labeled items and returns the batch, so the numbers cover
what the labeling service pays per query. Baselines run in the same process on the same arrays:

* modAL ``margin_sampling`` with an estimator whose ``predict_proba`` returns the planted
  probabilities of the unlabeled rows (modAL expects the caller to pass the unlabeled pool);
* scikit-activeml ``UncertaintySampling(method="margin_sampling")`` with a classifier that does
  the same, queried the way its docs show (full ``X`` plus ``y`` with NaN for unlabeled).

A baseline whose package is missing is skipped with a note. Cluster-Margin is timed after the
one-time :func:`labella.strategies.fit_clusters`, whose time is reported separately.

    python benchmarks/query_speed.py --sizes 10000 100000 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from labella.strategies import PoolView, fit_clusters, get_strategy


@dataclass
class Pool:
    probs: np.ndarray
    embeddings: np.ndarray
    labeled: np.ndarray
    n_labeled: int  # the first n_labeled items are the labeled ones


def make_pool(
    n_items: int, *, n_classes: int, dim: int, labeled_fraction: float, seed: int
) -> Pool:
    """Seeded planted data: softmax probabilities and unit embeddings from a Gaussian mixture."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n_items, n_classes), dtype=np.float32)
    logits *= 2.0
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    n_topics = 64
    centers = rng.standard_normal((n_topics, dim), dtype=np.float32)
    embeddings = np.empty((n_items, dim), dtype=np.float32)
    step = 65_536
    for start in range(0, n_items, step):
        stop = min(start + step, n_items)
        topic = rng.integers(0, n_topics, size=stop - start)
        chunk = centers[topic] + 0.8 * rng.standard_normal((stop - start, dim), dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        embeddings[start:stop] = chunk
    n_labeled = int(n_items * labeled_fraction)
    labeled = np.zeros(n_items, dtype=bool)
    labeled[:n_labeled] = True
    return Pool(probs=probs, embeddings=embeddings, labeled=labeled, n_labeled=n_labeled)


def time_interleaved(
    runners: dict[str, Callable[[], Any]], repeats: int, min_round_s: float = 0.02
) -> dict[str, tuple[float, Any]]:
    """Median seconds per call for each runner, and its last result.

    The runners take turns within each repeat, in an order rotated every repeat and each after
    an untimed call, so load spikes and cache state hit them alike; sub-millisecond calls are
    looped (like ``timeit``) so one repeat lasts ``min_round_s``.
    """
    loops: dict[str, int] = {}
    results: dict[str, Any] = {}
    for name, run in runners.items():
        start = time.perf_counter()
        results[name] = run()  # warm-up
        once = time.perf_counter() - start
        loops[name] = max(1, int(min_round_s / max(once, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            run = runners[name]
            run()
            start = time.perf_counter()
            for _ in range(loops[name]):
                results[name] = run()
            samples[name].append((time.perf_counter() - start) / loops[name])
    return {name: (statistics.median(samples[name]), results[name]) for name in runners}


def labella_margin(pool: Pool, batch: int) -> Callable[[], np.ndarray]:
    strategy = get_strategy("margin")

    def run() -> np.ndarray:
        view = PoolView(labeled=pool.labeled, probs=pool.probs)
        return strategy.select(view, batch, rng=np.random.default_rng(0))

    return run


def cluster_margin(pool: Pool, clusters: np.ndarray, batch: int) -> Callable[[], np.ndarray]:
    strategy = get_strategy("cluster_margin")

    def run() -> np.ndarray:
        view = PoolView(labeled=pool.labeled, probs=pool.probs, clusters=clusters)
        return strategy.select(view, batch, rng=np.random.default_rng(0))

    return run


class PlantedEstimator:
    """What modAL needs from a classifier: ``predict_proba`` over the pool it is given."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        assert len(X) == len(self.probs)
        return self.probs


def modal_margin(pool: Pool, batch: int) -> Callable[[], np.ndarray] | str:
    if importlib.util.find_spec("modAL") is None:
        return "modAL-python is not installed (pip install modAL-python)"
    from modAL.uncertainty import margin_sampling

    unlabeled_x = pool.embeddings[pool.n_labeled :]  # views: the unlabeled rows are contiguous
    estimator = PlantedEstimator(pool.probs[pool.n_labeled :])

    def run() -> np.ndarray:
        picked, _ = margin_sampling(estimator, unlabeled_x, n_instances=batch)
        return np.asarray(picked) + pool.n_labeled

    return run


def skactiveml_margin(pool: Pool, batch: int) -> Callable[[], np.ndarray] | str:
    if importlib.util.find_spec("skactiveml") is None:
        return "scikit-activeml is not installed (pip install scikit-activeml)"
    from skactiveml.base import SkactivemlClassifier
    from skactiveml.pool import UncertaintySampling

    n_classes = pool.probs.shape[1]

    class PlantedClassifier(SkactivemlClassifier):
        def __init__(self, probs: np.ndarray | None = None) -> None:
            super().__init__(classes=np.arange(n_classes), missing_label=np.nan)
            self.probs = probs

        def fit(self, X: Any, y: Any, sample_weight: Any = None) -> PlantedClassifier:
            return self

        def predict_proba(self, X: Any) -> np.ndarray:
            assert self.probs is not None and len(X) == len(self.probs)
            return self.probs

    y = np.full(len(pool.labeled), np.nan)
    y[: pool.n_labeled] = np.arange(pool.n_labeled) % n_classes
    classifier = PlantedClassifier(pool.probs[pool.n_labeled :])
    query_strategy = UncertaintySampling(method="margin_sampling", random_state=0)

    def run() -> np.ndarray:
        picked = query_strategy.query(
            X=pool.embeddings, y=y, clf=classifier, fit_clf=False, batch_size=batch
        )
        return np.asarray(picked)

    return run


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def fmt_ms(seconds: float | None) -> str:
    return "skipped" if seconds is None else f"{seconds * 1e3:.1f}"


def fmt_ratio(ours: float, other: float | None) -> str:
    return "n/a" if other is None else f"{ours / other:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--labeled-fraction", type=float, default=0.01)
    parser.add_argument("--n-clusters", type=int, default=256, help="for fit_clusters")
    parser.add_argument(
        "--cluster-sizes",
        type=int,
        nargs="*",
        default=None,
        help="pool sizes for the Cluster-Margin timing (default: the largest of --sizes)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="n_threads for fit_clusters (default: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cluster_sizes = set(args.cluster_sizes if args.cluster_sizes is not None else [max(args.sizes)])

    print(
        f"python {platform.python_version()} | numpy {np.__version__} | "
        f"modAL-python {version('modAL-python')} | scikit-activeml {version('scikit-activeml')} "
        f"| {os.cpu_count()} CPUs | {platform.machine()}"
    )
    print(
        f"batch {args.batch}, {args.classes} classes, {args.dim}-d float32 embeddings, "
        f"{args.labeled_fraction:.0%} labeled, median of {args.repeats} interleaved repeats "
        f"after 1 warm-up; load average at start {os.getloadavg()[0]:.1f}\n"
    )
    margin_rows: list[str] = []
    cluster_rows: list[str] = []
    notes: set[str] = set()
    for n_items in args.sizes:
        pool = make_pool(
            n_items,
            n_classes=args.classes,
            dim=args.dim,
            labeled_fraction=args.labeled_fraction,
            seed=args.seed,
        )
        runners: dict[str, Callable[[], Any]] = {"labella": labella_margin(pool, args.batch)}
        slow: dict[str, Callable[[], Any]] = {}
        for label, factory in (("modAL", modal_margin), ("skactiveml", skactiveml_margin)):
            run = factory(pool, args.batch)
            if isinstance(run, str):
                notes.add(f"note: {run}; baseline skipped")
            else:
                # scikit-activeml copies the whole pool per query; timed on its own so its
                # cache pollution does not land on the two fast ones
                (slow if label == "skactiveml" else runners)[label] = run
        timings = time_interleaved(runners, args.repeats)
        if slow:
            timings.update(time_interleaved(slow, args.repeats))
        ours_s, ours_pick = timings["labella"]
        baseline_times: dict[str, float | None] = {
            label: timings[label][0] if label in timings else None
            for label in ("modAL", "skactiveml")
        }
        agreement = {
            label: f"{len(set(picked.tolist()) & set(ours_pick.tolist()))}/{args.batch}"
            for label, (_, picked) in timings.items()
        }
        margin_rows.append(
            f"| {n_items:>9,} | {fmt_ms(ours_s):>10} | {fmt_ms(baseline_times['modAL']):>10} "
            f"| {fmt_ms(baseline_times['skactiveml']):>14} "
            f"| {fmt_ratio(ours_s, baseline_times['modAL']):>11} "
            f"| {fmt_ratio(ours_s, baseline_times['skactiveml']):>16} "
            f"| {agreement.get('modAL', 'n/a'):>13} |"
        )
        if n_items in cluster_sizes:
            start = time.perf_counter()
            clusters = fit_clusters(
                pool.embeddings, args.n_clusters, random_state=args.seed, n_threads=args.threads
            )
            fit_s = time.perf_counter() - start
            runner = {"cluster_margin": cluster_margin(pool, clusters, args.batch)}
            select_s, picked = time_interleaved(runner, args.repeats)["cluster_margin"]
            n_spread = len(set(clusters[picked].tolist()))
            cluster_rows.append(
                f"| {n_items:>9,} | {args.n_clusters:>8} | {fit_s:>19.1f} "
                f"| {fmt_ms(select_s):>22} | {n_spread:>16} |"
            )
        del pool
        print(f"done: {n_items:,} items", file=sys.stderr, flush=True)

    print("Margin sampling, one query (ms, lower is better)\n")
    print(
        "| pool size | labella ms |   modAL ms | scikit-activeml ms | labella/modAL "
        "| labella/skactiveml | same as modAL |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in margin_rows:
        print(row)
    if cluster_rows:
        print("\nCluster-Margin (candidate_factor 10) after the one-time fit_clusters\n")
        print("| pool size | clusters | fit_clusters s (once) | cluster_margin query ms "
              "| clusters in batch |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|")
        for row in cluster_rows:
            print(row)
    for note in sorted(notes):
        print(note)
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
