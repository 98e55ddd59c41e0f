"""Label efficiency: how many labels each query strategy needs, on real text data sets.

For every task the pool is embedded once with the project's encoder (MiniLM) through the on-disk
embedding cache, then :func:`labella.services.simulation.simulate` replays active learning with
an oracle for each strategy and seed: seed set of 20 by k-means cold start, batches of 20, a
linear head (logistic regression) refitted after every batch, test accuracy after every batch.

Baselines run on the same features, head, seed sets and loop:

* ``random``: random order (passive learning);
* ``modal_margin``: modAL's ``margin_sampling`` (modAL-python), fed the head's probabilities;
* ``smalltext_breaking_ties``: small-text's ``BreakingTies`` (Luo et al., 2005);
* ``smalltext_lightweight_coreset``: small-text's ``LightweightCoreset`` (Bachem et al., 2018),
  a diversity baseline over the same embeddings.

The headline is the number of labels the project's default (strategy + head) needs to reach the
accuracy random order reaches with the full budget (1,500 labels).

    .venv/bin/python benchmarks/label_efficiency.py                 # SST-2 and AG News
    .venv/bin/python benchmarks/label_efficiency.py --tasks sst2 --seeds 0 --budget 500

Images (the CIFAR-10 subset) are left to the image-encoder issue: images are not importable yet.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from _data import TASKS, TextTask
from labella.services import simulation as sim
from labella.strategies import PoolView, QueryStrategy, get_strategy

HERE = Path(__file__).resolve().parent
DEFAULT_STRATEGY = "cluster_margin"
"""The strategy a new project uses (``ProjectSpec.strategy``)."""


# -- third-party baselines, run inside the same loop -----------------------------------------


class _ProbsOnly:
    """Stands in for a fitted classifier: returns the head's probabilities for the exact array
    it was built for, so a library strategy scores the same predictions as ours."""

    def __init__(self, X: np.ndarray, probs: np.ndarray) -> None:
        self._X = X
        self._probs = probs

    def predict_proba(self, X: Any, **_: Any) -> np.ndarray:
        if X is not self._X:
            raise AssertionError("the baseline asked for probabilities of unexpected rows")
        return self._probs


class ModalMargin(QueryStrategy):
    """modAL-python's ``modAL.uncertainty.margin_sampling`` on the unlabeled rows."""

    name = "modal_margin"
    requires: ClassVar[frozenset[str]] = frozenset({"probs", "embeddings"})

    def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
        from modAL.uncertainty import margin_sampling

        assert pool.probs is not None and pool.embeddings is not None
        unlabeled = pool.unlabeled_indices()
        X = pool.embeddings[unlabeled]
        picked = margin_sampling(_ProbsOnly(X, pool.probs[unlabeled]), X, n_instances=n)
        picked = picked[0] if isinstance(picked, tuple) else picked
        return unlabeled[np.asarray(picked, dtype=np.int64)]


class _SmallTextClassifier:
    """The small-text classifier interface over precomputed arrays: ``dataset`` is an array of
    row numbers of the pool."""

    def __init__(self, embeddings: np.ndarray, probs: np.ndarray) -> None:
        self.embeddings = embeddings
        self.probs = probs

    def predict_proba(self, dataset: np.ndarray) -> np.ndarray:
        return self.probs[dataset]

    def embed(
        self, dataset: np.ndarray, return_proba: bool = False, pbar: Any = None, **_: Any
    ) -> Any:
        if return_proba:
            return self.embeddings[dataset], self.probs[dataset]
        return self.embeddings[dataset]


class _SmallText(QueryStrategy):
    """A small-text query strategy (``query(clf, dataset, unlabeled, labeled, y, n)``) over the
    pool's row numbers."""

    requires: ClassVar[frozenset[str]] = frozenset({"probs", "embeddings"})

    def _make(self) -> Any:
        raise NotImplementedError

    def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
        assert pool.probs is not None and pool.embeddings is not None
        labeled = np.flatnonzero(pool.labeled)
        picked = self._make().query(
            _SmallTextClassifier(pool.embeddings, pool.probs),
            np.arange(pool.n_items),
            pool.unlabeled_indices(),
            labeled,
            np.zeros(labeled.size, dtype=np.int64),  # neither strategy reads the labels
            n=n,
        )
        return np.asarray(picked, dtype=np.int64)


class SmallTextBreakingTies(_SmallText):
    """small-text's ``BreakingTies``: smallest top-two probability margin (Luo et al., 2005)."""

    name = "smalltext_breaking_ties"

    def _make(self) -> Any:
        from small_text.query_strategies import BreakingTies

        return BreakingTies()


class SmallTextLightweightCoreset(_SmallText):
    """small-text's ``LightweightCoreset`` (Bachem, Lucic & Krause, KDD 2018) on embeddings."""

    name = "smalltext_lightweight_coreset"

    def _make(self) -> Any:
        from small_text.query_strategies import LightweightCoreset

        return LightweightCoreset()


BASELINES: dict[str, type[QueryStrategy]] = {
    cls.name: cls for cls in (ModalMargin, SmallTextBreakingTies, SmallTextLightweightCoreset)
}


# -- running ------------------------------------------------------------------------------------


def parse_strategy(spec: str) -> tuple[str, QueryStrategy]:
    """``margin``, ``cluster_margin:candidate_factor=5`` or a baseline name."""
    if spec in BASELINES:
        return spec, BASELINES[spec]()
    name, _, params_text = spec.partition(":")
    params: dict[str, Any] = {}
    for part in filter(None, params_text.split(",")):
        key, _, value = part.partition("=")
        params[key] = json.loads(value)
    return spec, get_strategy(name, **params)


def embed_task(task: TextTask, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    started = time.perf_counter()
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 15 or done == total:
            last[0] = now
            print(f"  encoding {task.name}: {done:,}/{total:,}", file=sys.stderr, flush=True)

    vectors = sim.embed_texts(
        task.pool.texts + task.test.texts, cache_dir=cache_dir, progress=report
    )
    print(f"  embeddings ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    n = len(task.pool)
    return vectors[:n], vectors[n:]


def run_task(
    task: TextTask,
    *,
    strategies: Sequence[tuple[str, QueryStrategy]],
    seeds: Sequence[int],
    budget: int,
    batch: int,
    initial: int,
    head: str,
    head_params: dict[str, Any],
    n_clusters: int | None,
    cache_dir: Path,
    self_training: bool = False,
) -> sim.SimulationResult:
    X_pool, X_test = embed_task(task, cache_dir)
    last = [0.0]
    started = time.perf_counter()

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 30 or done == total:
            last[0] = now
            print(
                f"  simulating {task.name}: {done}/{total} fits, {now - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    return sim.simulate(
        X_pool,
        task.pool.labels,
        X_test,
        task.test.labels,
        strategies=strategies,
        seeds=seeds,
        n_classes=len(task.pool.classes),
        initial=initial,
        batch=batch,
        budget=budget,
        head=head,
        head_params=head_params,
        n_clusters=n_clusters,
        progress=report,
        self_training=self_training,
    )


def mean_curve_labels(result: sim.SimulationResult, strategy: str, target: float) -> str:
    """Labels at which the seed-averaged curve first reaches ``target`` (less noisy than the
    per-seed first crossing on a small test set)."""
    mean = result.curves(strategy).mean(axis=0)
    hits = np.flatnonzero(mean >= target - 1e-12)
    return str(int(result.n_labels[hits[0]])) if hits.size else "not reached"


def headline(result: sim.SimulationResult, *, fixed: float | None = None) -> list[str]:
    """Per strategy: labels to reach random order's accuracy at the budget (per seed and on the
    seed-mean curve), and optionally labels to reach a ``fixed`` accuracy."""
    reference = result.reference_accuracy
    targets = [] if reference is None else [(f"random@{result.budget}", reference)]
    if fixed is not None:
        targets.append(("fixed target", fixed))
    if not targets:
        return ["(no headline: random order was not simulated)"]
    lines = []
    for title, target in targets:
        lines.append(
            f"labels needed to reach {title} = {target:.4f} "
            f"(full pool {result.full_pool_accuracy:.4f}):"
        )
        for name in result.strategies:
            stat = result.labels_to_reach(name, target)
            mark = "  <- project default" if name == DEFAULT_STRATEGY else ""
            lines.append(
                f"  {name:<34} {stat.format_count():>24}   per seed: {stat.format_seeds():<16}"
                f" mean curve: {mean_curve_labels(result, name, target)}{mark}"
            )
    return lines


def _labels_to_reference(result: sim.SimulationResult) -> dict[str, list[float | None]]:
    reference = result.reference_accuracy
    if reference is None:
        return {}
    return {
        name: [
            None if np.isnan(v) else float(v)
            for v in result.labels_to_reach(name, reference).values
        ]
        for name in result.strategies
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="sst2,agnews", help="comma-separated: sst2, agnews")
    parser.add_argument(
        "--strategies",
        default="margin,cluster_margin,random,modal_margin,smalltext_breaking_ties,"
        "smalltext_lightweight_coreset",
        help="strategy names, name:param=value,... or baseline names",
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--head", default="linear", choices=["linear", "mlp"])
    parser.add_argument("--C", type=float, default=None, help="inverse L2 strength of the head")
    parser.add_argument("--class-weight", default=None, choices=["balanced"])
    parser.add_argument("--clusters", type=int, default=None, help="k-means clusters")
    parser.add_argument("--cache-dir", type=Path, default=HERE / "out" / "cache")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "label_efficiency")
    parser.add_argument(
        "--fixed-target",
        action="append",
        default=[],
        metavar="TASK=ACCURACY",
        help="also report labels to reach this accuracy (e.g. the random@1500 of another setup)",
    )
    parser.add_argument("--tag", default="", help="suffix of the output folder of this run")
    parser.add_argument(
        "--self-training",
        action="store_true",
        help="every model also learns from its confident predictions on the unlabeled pool, as "
        "new single-label projects train",
    )
    args = parser.parse_args(argv)

    head_params: dict[str, Any] = {}
    if args.C is not None:
        head_params["C"] = args.C
    if args.class_weight:
        head_params["class_weight"] = args.class_weight
    strategies = [parse_strategy(s.strip()) for s in args.strategies.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    fixed_targets = {
        task: float(value) for task, _, value in (t.partition("=") for t in args.fixed_target)
    }
    command = "python benchmarks/label_efficiency.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    summary: dict[str, Any] = {"command": command.strip(), "tasks": {}}
    for name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        task = TASKS[name]()
        print(f"\n== {task.description}", flush=True)
        result = run_task(
            task,
            strategies=strategies,
            seeds=seeds,
            budget=args.budget,
            batch=args.batch,
            initial=args.initial,
            head=args.head,
            head_params=head_params,
            n_clusters=args.clusters,
            cache_dir=args.cache_dir,
            self_training=args.self_training,
        )
        out = args.out / (name + (f"-{args.tag}" if args.tag else ""))
        sim.write_report(result, out, title=f"Label efficiency: {task.description}")
        print(sim.to_markdown(result))
        lines = headline(result, fixed=fixed_targets.get(name))
        print("\n".join(lines))
        seconds = {s: float(result.seconds[i].mean()) for i, s in enumerate(result.strategies)}
        print("seconds per run: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
        summary["tasks"][name] = {
            "description": task.description,
            "full_pool_accuracy": result.full_pool_accuracy,
            "reference_accuracy": result.reference_accuracy,
            "labels_to_reference": _labels_to_reference(result),
            "seconds_per_run": seconds,
            "out": str(out),
        }
        (out / "summary.json").write_text(
            json.dumps(summary["tasks"][name] | {"command": summary["command"]}, indent=2),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
