"""Simulated active learning: replay the labeling loop with an oracle on data that has labels.

Users run it (``labella simulate``) to choose a query strategy on their own data before they pay
for labels. The loop is the pool-based one of Lewis & Gale ("A sequential algorithm for training
text classifiers", SIGIR 1994; surveyed by Settles, "Active Learning Literature Survey", 2009):
a seed set chosen by a cold-start strategy, then, until the budget is spent, fit the head on the
labeled items, record its test accuracy, query a batch with the strategy and reveal the batch's
labels. The results are summarised the way the literature reports them: labels needed to reach a
fraction of the accuracy that the same head reaches on the whole labeled pool, accuracy at the
budget, and the normalised area under the learning curve (AULC).

No database: the loop works on arrays. Loading a labeled file or class folder and embedding its
texts through the on-disk cache live here too, for the CLI and the benchmarks.
"""

from __future__ import annotations

import csv
import functools
import math
import textwrap
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from labella.errors import InvalidInput
from labella.strategies import (
    PoolView,
    QueryStrategy,
    available_strategies,
    fit_clusters,
    get_strategy,
    strategy_class,
)

ProgressCallback = Callable[[int, int], None]

TARGET_FRACTIONS: tuple[float, ...] = (0.95, 0.98, 0.99)
"""Fractions of the full-pool accuracy reported as "labels needed to reach"."""

REFERENCE_STRATEGY = "random"
"""The strategy whose accuracy at the budget defines the headline target."""

COLD_STARTS = ("kmeans_cold_start", "random")
HOLDOUT_FRACTION = 0.2
_HOLDOUT_SEED = 0
_CLUSTER_SEED = 0
# What the loop can put in a PoolView; strategies needing more (BALD's prob_samples) or
# multi-label pools cannot be simulated here.
_PROVIDED_INPUTS = frozenset({"probs", "embeddings", "clusters"})


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedStat:
    """One metric over seeds; NaN marks a seed where it does not exist (target not reached)."""

    values: np.ndarray

    @property
    def n_seeds(self) -> int:
        return int(self.values.size)

    @property
    def n_valid(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.values)))

    @property
    def complete(self) -> bool:
        return self.n_valid == self.n_seeds

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.values)) if self.n_valid else math.nan

    @property
    def sd(self) -> float:
        """Population standard deviation over the seeds that have a value."""
        return float(np.nanstd(self.values)) if self.n_valid else math.nan

    @property
    def min(self) -> float:
        return float(np.nanmin(self.values)) if self.n_valid else math.nan

    @property
    def max(self) -> float:
        return float(np.nanmax(self.values)) if self.n_valid else math.nan

    def format_count(self) -> str:
        """``"320 ± 40"``, or why there is no number (the target was not reached)."""
        if self.n_valid == 0:
            return "not reached"
        if not self.complete:
            missing = self.n_seeds - self.n_valid
            return f"not reached on {missing}/{self.n_seeds} seeds"
        return f"{self.mean:.0f} ± {self.sd:.0f}"

    def format_fraction(self) -> str:
        return f"{self.mean:.3f} ± {self.sd:.3f}" if self.n_valid else "n/a"

    def format_seeds(self, *, digits: int = 0) -> str:
        """Per-seed values, ``"-"`` where missing: ``"300, 320, 340"``."""
        return ", ".join("-" if np.isnan(v) else f"{v:.{digits}f}" for v in self.values)


@dataclass(frozen=True)
class SummaryRow:
    """One strategy's line of the results table."""

    strategy: str
    labels_to_fraction: dict[float, SeedStat]
    labels_to_reference: SeedStat | None
    accuracy_at_budget: SeedStat
    aulc: SeedStat


@dataclass(frozen=True)
class SimulationResult:
    """Learning curves of every (strategy, seed) on a shared label schedule.

    ``accuracy[s, k, t]`` is the test accuracy of strategy ``strategies[s]`` with seed
    ``seeds[k]`` after ``n_labels[t]`` labels.
    """

    strategies: tuple[str, ...]
    seeds: tuple[int, ...]
    n_labels: np.ndarray
    accuracy: np.ndarray
    full_pool_accuracy: float
    n_pool: int
    n_test: int
    n_classes: int
    initial: int
    batch: int
    budget: int
    head: str
    head_params: dict[str, Any]
    cold_start: str
    n_clusters: int | None
    test_source: str
    seconds: np.ndarray = field(repr=False)
    self_training: bool = False

    def index_of(self, strategy: str) -> int:
        try:
            return self.strategies.index(strategy)
        except ValueError:
            raise KeyError(f"no strategy {strategy!r} in this result") from None

    def curves(self, strategy: str) -> np.ndarray:
        """``(n_seeds, n_steps)`` test accuracy of one strategy."""
        return self.accuracy[self.index_of(strategy)]

    def labels_to_reach(self, strategy: str, target: float) -> SeedStat:
        """Per seed, the first label count whose accuracy is at least ``target`` (NaN if never)."""
        curves = self.curves(strategy)
        reached = curves >= target - 1e-12
        first = np.argmax(reached, axis=1)
        values = np.where(reached.any(axis=1), self.n_labels[first].astype(np.float64), np.nan)
        return SeedStat(values)

    def accuracy_at_budget(self, strategy: str) -> SeedStat:
        return SeedStat(self.curves(strategy)[:, -1].astype(np.float64))

    def aulc(self, strategy: str) -> SeedStat:
        """Area under the accuracy-vs-labels curve over [initial, budget], divided by the width
        of that range: the mean accuracy over the budget, in [0, 1]."""
        return SeedStat(normalised_aulc(self.n_labels, self.curves(strategy)))

    @property
    def reference_accuracy(self) -> float | None:
        """Mean accuracy of random order at the budget, if random order was simulated."""
        if REFERENCE_STRATEGY not in self.strategies:
            return None
        return self.accuracy_at_budget(REFERENCE_STRATEGY).mean

    def summary(self, fractions: Sequence[float] = TARGET_FRACTIONS) -> list[SummaryRow]:
        reference = self.reference_accuracy
        rows = []
        for name in self.strategies:
            rows.append(
                SummaryRow(
                    strategy=name,
                    labels_to_fraction={
                        f: self.labels_to_reach(name, f * self.full_pool_accuracy)
                        for f in fractions
                    },
                    labels_to_reference=(
                        None if reference is None else self.labels_to_reach(name, reference)
                    ),
                    accuracy_at_budget=self.accuracy_at_budget(name),
                    aulc=self.aulc(name),
                )
            )
        return rows


def normalised_aulc(n_labels: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Trapezoidal area under each row of ``curves`` over ``n_labels``, per unit of labels.

    A single-point curve (budget == initial) has its only accuracy as its mean.
    """
    curves = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    x = np.asarray(n_labels, dtype=np.float64)
    width = x[-1] - x[0]
    if width <= 0:
        return curves[:, -1].copy()
    return np.trapezoid(curves, x, axis=1) / width


# -- the loop ----------------------------------------------------------------------------------


StrategySpec = str | tuple[str, QueryStrategy]
"""A registered strategy name, or a (label, configured strategy instance) pair."""


def simulate(
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    *,
    strategies: Sequence[StrategySpec],
    seeds: Sequence[int],
    n_classes: int,
    initial: int = 20,
    batch: int = 20,
    budget: int = 1000,
    head: str = "linear",
    head_params: Mapping[str, Any] | None = None,
    cold_start: str = "kmeans_cold_start",
    clusters: np.ndarray | None = None,
    n_clusters: int | None = None,
    progress: ProgressCallback | None = None,
    self_training: bool = False,
) -> SimulationResult:
    """Run the pool-based loop with an oracle for every strategy and seed.

    Args:
        X_pool, y_pool: features (e.g. embeddings) and integer labels of the pool.
        X_test, y_test: held-out evaluation set; without one, a stratified 20% of the pool is
            held out (the same split for every strategy and seed).
        strategies: registered names (``"margin"``) or ``(label, strategy)`` pairs.
        seeds: one run per seed; a seed fixes the cold-start set (shared by all strategies),
            the head's ``random_state`` and the strategy's ``rng``.
        initial, batch, budget: seed-set size, labels per query, total labels.
        head, head_params: :func:`labella.learners.heads.make_head` kind and constructor
            parameters (``C``, ``class_weight``, ...).
        cold_start: ``"kmeans_cold_start"`` or ``"random"``.
        clusters: precomputed cluster ids of the pool for ``PoolView.clusters``; else
            :func:`labella.strategies.fit_clusters` with ``n_clusters`` is run once
            (when a strategy needs clusters) and reused by every strategy and seed.
        progress: ``progress(done, total)`` over fitted models.
        self_training: each model also learns from its confident predictions on the unlabeled
            rest of the pool, as a project with ``self_training`` trains (and ranks with them);
            each step then fits the head ``1 + rounds`` times on up to 20,000 more rows.

    Raises:
        InvalidInput: inconsistent arrays, unknown or unsupported strategies, fewer than two
            classes, or a budget below the seed-set size.
    """
    from labella.learners.heads import make_head

    X_pool, y_pool = _check_xy(X_pool, y_pool, n_classes=n_classes, what="pool")
    # The heads compute in float64; converting once here saves a pool-sized copy per step.
    X_pool = X_pool.astype(np.float64, copy=False)
    specs = resolve_strategies(strategies)
    seed_list = check_seeds(seeds)
    check_sizes(initial=initial, batch=batch, budget=budget)
    if cold_start not in COLD_STARTS:
        raise InvalidInput(
            f"unknown cold start {cold_start!r}; choose one of {', '.join(COLD_STARTS)}"
        )
    head_kwargs = dict(head_params or {})
    check_head(head, n_classes=n_classes, params=head_kwargs)

    if (X_test is None) != (y_test is None):
        raise InvalidInput("give both X_test and y_test, or neither")
    if X_test is None or y_test is None:
        test_rows, pool_rows = stratified_holdout(y_pool, HOLDOUT_FRACTION, seed=_HOLDOUT_SEED)
        X_test, y_test = X_pool[test_rows], y_pool[test_rows]
        X_pool, y_pool = X_pool[pool_rows], y_pool[pool_rows]
        if clusters is not None:
            clusters = np.asarray(clusters)[pool_rows]
        test_source = f"stratified {HOLDOUT_FRACTION:.0%} of the data"
    else:
        X_test, y_test = _check_xy(X_test, y_test, n_classes=n_classes, what="test")
        test_source = "test set"
        if X_test.shape[1] != X_pool.shape[1]:
            raise InvalidInput(
                f"test features have {X_test.shape[1]} columns, pool features {X_pool.shape[1]}"
            )

    present = np.unique(y_pool).size
    if present < 2:
        raise InvalidInput(
            f"the pool has labels of {present} class; a simulation needs at least 2 classes"
        )
    n_pool = X_pool.shape[0]
    if initial > n_pool:
        raise InvalidInput(f"initial ({initial}) is larger than the pool ({n_pool} items)")
    budget = min(budget, n_pool)
    schedule = label_schedule(initial=initial, batch=batch, budget=budget)

    needs_clusters = any("clusters" in strategy.requires for _, strategy in specs)
    if clusters is not None:
        clusters = _check_clusters(clusters, n_pool)
    elif needs_clusters:
        n_clusters = n_clusters or default_n_clusters(n_pool)
        clusters = fit_clusters(X_pool, n_clusters, random_state=_CLUSTER_SEED)
    used_clusters = None if clusters is None else int(np.unique(clusters).size)

    total = len(specs) * len(seed_list) * len(schedule) + 1
    tick = _Ticker(progress, total)

    def new_head(seed: int) -> Any:
        return make_head(head, n_classes=n_classes, random_state=seed, **head_kwargs)

    full_model = new_head(_HOLDOUT_SEED).fit(X_pool, y_pool)
    full_pool_accuracy = accuracy(full_model, X_test, y_test)
    tick()

    seed_sets = {
        seed: select_seed_set(X_pool, initial, cold_start=cold_start, seed=seed)
        for seed in seed_list
    }
    acc = np.zeros((len(specs), len(seed_list), len(schedule)), dtype=np.float64)
    seconds = np.zeros((len(specs), len(seed_list)), dtype=np.float64)
    for s, (label, strategy) in enumerate(specs):
        for k, seed in enumerate(seed_list):
            started = time.perf_counter()
            rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
            curve = run_loop(
                X_pool,
                y_pool,
                X_test,
                y_test,
                strategy=strategy,
                seed_set=seed_sets[seed],
                schedule=schedule,
                make_model=functools.partial(new_head, seed),
                clusters=clusters,
                rng=rng,
                on_step=tick,
                self_training=self_training,
            )
            acc[s, k] = curve
            seconds[s, k] = time.perf_counter() - started

    return SimulationResult(
        strategies=tuple(label for label, _ in specs),
        seeds=tuple(seed_list),
        n_labels=schedule,
        accuracy=acc,
        full_pool_accuracy=full_pool_accuracy,
        n_pool=n_pool,
        n_test=int(X_test.shape[0]),
        n_classes=n_classes,
        initial=initial,
        batch=batch,
        budget=budget,
        head=head,
        head_params=head_kwargs,
        cold_start=cold_start,
        n_clusters=used_clusters,
        test_source=test_source,
        seconds=seconds,
        self_training=self_training,
    )


def run_loop(
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    *,
    strategy: QueryStrategy,
    seed_set: np.ndarray,
    schedule: np.ndarray,
    make_model: Callable[[], Any],
    clusters: np.ndarray | None,
    rng: np.random.Generator,
    on_step: Callable[[], None] | None = None,
    on_pick: Callable[[np.ndarray], None] | None = None,
    self_training: bool = False,
) -> np.ndarray:
    """One learning curve: test accuracy after each label count in ``schedule``.

    The oracle is ``y_pool``: a queried item's label is simply revealed. ``on_pick`` sees each
    batch of pool indices the strategy picked, in order (e.g. to train another learner on the
    same labels later). With ``self_training`` each model also learns from its confident
    predictions on the still unlabeled pool, as a project's training does
    (:class:`labella.learners.self_training.SelfTrainedHead`), and ranks with them.
    """
    from labella.learners.self_training import SelfTrainedHead, sample_rows

    labeled = np.zeros(X_pool.shape[0], dtype=bool)
    labeled[seed_set] = True
    curve = np.zeros(len(schedule), dtype=np.float64)
    model: Any = None
    for t, n_target in enumerate(schedule):
        if t > 0:
            need = int(n_target) - int(np.count_nonzero(labeled))
            pool = PoolView(
                labeled=labeled,
                probs=model.predict_proba(X_pool),
                embeddings=X_pool,
                clusters=clusters,
            )
            picked = strategy.select(pool, need, rng=rng)
            if picked.size != need or labeled[picked].any():
                raise RuntimeError(
                    f"strategy {strategy.name!r} returned {picked.size} items (wanted {need} "
                    "unlabeled ones)"
                )
            labeled[picked] = True
            if on_pick is not None:
                on_pick(picked)
        if self_training:
            unlabeled = X_pool[sample_rows(np.flatnonzero(~labeled), random_state=int(n_target))]
            model = SelfTrainedHead(make_model, unlabeled).fit(X_pool[labeled], y_pool[labeled])
        else:
            model = make_model().fit(X_pool[labeled], y_pool[labeled])
        curve[t] = accuracy(model, X_test, y_test)
        if on_step is not None:
            on_step()
    return curve


def select_seed_set(X_pool: np.ndarray, initial: int, *, cold_start: str, seed: int) -> np.ndarray:
    """The first ``initial`` items to label, chosen without a model."""
    rng = np.random.default_rng([seed, 0])
    pool = PoolView(labeled=np.zeros(X_pool.shape[0], dtype=bool), embeddings=X_pool)
    return get_strategy(cold_start).select(pool, initial, rng=rng)


def accuracy(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(X) == y))


def label_schedule(*, initial: int, batch: int, budget: int) -> np.ndarray:
    """Label counts at which the model is evaluated: initial, initial + batch, ..., budget (the
    last query may be a partial batch so the curve ends exactly at the budget)."""
    steps = np.arange(initial, budget, batch, dtype=np.int64)
    return np.append(steps, np.int64(budget)) if (not steps.size or steps[-1] != budget) else steps


def default_n_clusters(n_items: int) -> int:
    """The number of clusters a project fits for its pool (so the simulation matches the app)."""
    from labella.services.ranking import PROJECT_CLUSTERS

    return min(PROJECT_CLUSTERS, n_items)


def stratified_holdout(
    y: np.ndarray, fraction: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(test rows, pool rows): ``fraction`` of each class with at least two items goes to test."""
    check_can_hold_out(y)
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for cls in np.unique(y):
        rows = np.flatnonzero(y == cls)
        if rows.size < 2:
            continue
        take = min(rows.size - 1, max(1, round(rows.size * fraction)))
        test.append(rng.permutation(rows)[:take])
    test_rows = np.sort(np.concatenate(test)) if test else np.empty(0, dtype=np.int64)
    pool_mask = np.ones(y.shape[0], dtype=bool)
    pool_mask[test_rows] = False
    return test_rows, np.flatnonzero(pool_mask)


def check_can_hold_out(y: np.ndarray) -> None:
    """InvalidInput unless some class has two labelled items, one to test on and one to keep."""
    if not (np.unique(y, return_counts=True)[1] >= 2).any():
        raise InvalidInput("too few labeled items to hold out a test set; pass a test set")


class _Ticker:
    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        if callback is not None:
            callback(0, total)

    def __call__(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)


# -- validation --------------------------------------------------------------------------------


def _check_xy(
    X: np.ndarray, y: np.ndarray, *, n_classes: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[0] == 0:
        raise InvalidInput(f"{what} features must be a non-empty 2-D array, got shape {X.shape}")
    if X.dtype.kind not in "iuf":
        raise InvalidInput(f"{what} features must be numbers, got dtype {X.dtype}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise InvalidInput(
            f"{what} labels must be 1-D with one label per row ({X.shape[0]}), got shape {y.shape}"
        )
    if y.dtype.kind not in "iu":
        raise InvalidInput(f"{what} labels must be integer class indices, got dtype {y.dtype}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer):
        raise InvalidInput(f"n_classes must be an integer, got {n_classes!r}")
    if n_classes < 2:
        raise InvalidInput(f"a simulation needs at least 2 classes, got n_classes={n_classes}")
    if y.min() < 0 or y.max() >= n_classes:
        raise InvalidInput(f"{what} labels must lie in [0, {n_classes}), got {y.min()}..{y.max()}")
    if not np.isfinite(X).all():
        raise InvalidInput(f"{what} features contain NaN or infinity")
    return X, y.astype(np.int64, copy=False)


def check_sizes(*, initial: int, batch: int, budget: int) -> None:
    for name, value in (("initial", initial), ("batch", batch), ("budget", budget)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    if budget < initial:
        raise InvalidInput(
            f"budget ({budget}) must be at least the initial seed set ({initial} labels)"
        )


def check_seeds(seeds: Sequence[int]) -> list[int]:
    seed_list = [int(s) for s in seeds]
    if not seed_list:
        raise InvalidInput("give at least one seed")
    if len(set(seed_list)) != len(seed_list):
        raise InvalidInput(f"seeds must be distinct, got {seed_list}")
    if any(s < 0 for s in seed_list):
        raise InvalidInput(f"seeds must be non-negative, got {seed_list}")
    return seed_list


def _check_clusters(clusters: np.ndarray, n_pool: int) -> np.ndarray:
    clusters = np.asarray(clusters)
    if clusters.shape != (n_pool,) or clusters.dtype.kind not in "iu":
        raise InvalidInput(
            f"clusters must be {n_pool} integer cluster ids, got shape {clusters.shape} "
            f"and dtype {clusters.dtype}"
        )
    return clusters


def check_head(head: str, *, n_classes: int = 2, params: Mapping[str, Any] | None = None) -> None:
    """Raise InvalidInput unless ``make_head(head, **params)`` builds a head."""
    from labella.learners.heads import make_head

    try:
        make_head(head, n_classes=n_classes, random_state=0, **dict(params or {}))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"bad head settings: {exc}") from exc


def resolve_strategies(strategies: Sequence[StrategySpec]) -> list[tuple[str, QueryStrategy]]:
    if isinstance(strategies, str):
        raise InvalidInput("strategies must be a list of names, not one string")
    specs: list[tuple[str, QueryStrategy]] = []
    for spec in strategies:
        if isinstance(spec, str):
            name = spec.strip()
            if name not in available_strategies():
                raise InvalidInput(
                    f"unknown strategy {name!r}; known strategies: "
                    f"{', '.join(simulatable_strategies())}"
                )
            label, strategy = name, get_strategy(name)
        else:
            label, strategy = spec
            if not isinstance(strategy, QueryStrategy):
                raise InvalidInput(f"strategy {label!r} is not a QueryStrategy instance")
        missing = sorted(strategy.requires - _PROVIDED_INPUTS)
        if missing or strategy.label_mode == "multi":
            why = f"it needs {', '.join(missing)}" if missing else "it is for multi-label data"
            raise InvalidInput(
                f"strategy {label!r} cannot be simulated ({why}); simulatable strategies: "
                f"{', '.join(simulatable_strategies())}"
            )
        specs.append((label, strategy))
    if not specs:
        raise InvalidInput("give at least one strategy")
    labels = [label for label, _ in specs]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise InvalidInput(f"strategies are listed more than once: {', '.join(repeated)}")
    return specs


def simulatable_strategies() -> list[str]:
    """Registered single-label strategies whose inputs the simulation loop can provide."""
    names = []
    for name in available_strategies():
        cls = strategy_class(name)
        if cls.requires <= _PROVIDED_INPUTS and cls._label_mode != "multi":
            names.append(name)
    return names


# -- reports -----------------------------------------------------------------------------------


def summary_table(result: SimulationResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the human-readable results table (see :func:`describe` for what the
    columns mean)."""
    header = ["strategy"]
    header += [f"to {f:.0%}" for f in TARGET_FRACTIONS]
    reference = result.reference_accuracy
    if reference is not None:
        header.append(f"to random@{result.budget} ({reference:.3f})")
    header += [f"accuracy@{result.budget}", "AULC"]
    rows = []
    for row in result.summary():
        line = [row.strategy]
        line += [row.labels_to_fraction[f].format_count() for f in TARGET_FRACTIONS]
        if row.labels_to_reference is not None:
            line.append(row.labels_to_reference.format_count())
        line += [row.accuracy_at_budget.format_fraction(), row.aulc.format_fraction()]
        rows.append(line)
    return header, rows


def describe(result: SimulationResult) -> str:
    """One paragraph saying what was simulated."""
    params = ", ".join(f"{k}={v}" for k, v in sorted(result.head_params.items()))
    head = f"{result.head} head" + (f" ({params})" if params else "")
    if result.self_training:
        head += ", self-trained on the unlabeled pool"
    clusters = f", {result.n_clusters} clusters" if result.n_clusters else ""
    return (
        f"{result.n_pool:,} pool items, {result.n_test:,} test items ({result.test_source}), "
        f"{result.n_classes} classes; {head}; seed set of {result.initial} by "
        f"{result.cold_start}, batches of {result.batch}, budget {result.budget}{clusters}; "
        f"seeds {', '.join(map(str, result.seeds))}. Full-pool accuracy "
        f'{result.full_pool_accuracy:.4f}. "to X%": labels needed to reach X% of the '
        f'full-pool accuracy; "to random@{result.budget}": labels needed to reach the accuracy '
        f"random order reaches with {result.budget} labels; AULC: area under the learning curve "
        "over the budget, normalised to [0, 1]. Cells are mean ± sd over seeds."
    )


def to_markdown(result: SimulationResult) -> str:
    header, rows = summary_table(result)
    lines = [describe(result), "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("mean", "sd", "min", "max", "n_reached", "per_seed")


def write_csv(result: SimulationResult, path: Path) -> None:
    """The table as CSV, one row per strategy, every metric as mean/sd/min/max/per-seed."""
    header = ["strategy", "full_pool_accuracy", "budget"]
    table: list[list[Any]] = []
    for row in result.summary():
        metrics: list[tuple[str, SeedStat]] = [
            (f"labels_to_{round(f * 100)}pct", row.labels_to_fraction[f]) for f in TARGET_FRACTIONS
        ]
        if row.labels_to_reference is not None:
            metrics.append(("labels_to_random_at_budget", row.labels_to_reference))
        metrics += [("accuracy_at_budget", row.accuracy_at_budget), ("aulc", row.aulc)]
        if not table:
            header += [f"{name}_{part}" for name, _ in metrics for part in CSV_FIELDS]
        line: list[Any] = [row.strategy, f"{result.full_pool_accuracy:.6f}", result.budget]
        for _, stat in metrics:
            line += [
                _csv_number(stat.mean),
                _csv_number(stat.sd),
                _csv_number(stat.min),
                _csv_number(stat.max),
                stat.n_valid,
                " ".join("" if np.isnan(v) else f"{v:g}" for v in stat.values),
            ]
        table.append(line)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(table)


def write_curves_csv(result: SimulationResult, path: Path) -> None:
    """Every learning curve point: strategy, seed, labels, accuracy."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["strategy", "seed", "labels", "accuracy"])
        for s, name in enumerate(result.strategies):
            for k, seed in enumerate(result.seeds):
                for t, n in enumerate(result.n_labels):
                    writer.writerow([name, seed, int(n), f"{result.accuracy[s, k, t]:.6f}"])


def _csv_number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"


def plot_curves(result: SimulationResult, paths: Sequence[Path], *, title: str = "") -> None:
    """Mean learning curve per strategy with a shaded min–max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    x = result.n_labels
    for s, name in enumerate(result.strategies):
        curves = result.accuracy[s]
        (line,) = ax.plot(x, curves.mean(axis=0), label=name, linewidth=1.6)
        if curves.shape[0] > 1:
            ax.fill_between(
                x, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.18
            )
    ax.axhline(
        result.full_pool_accuracy,
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"full pool ({result.full_pool_accuracy:.3f})",
    )
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy")
    subtitle = f"mean over {len(result.seeds)} seeds, band: min–max"
    lines = [*textwrap.wrap(title, 80), subtitle] if title else [f"Learning curves ({subtitle})"]
    ax.set_title("\n".join(lines), fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    for path in paths:
        fig.savefig(path)
    plt.close(fig)


@dataclass(frozen=True)
class ReportFiles:
    csv: Path
    markdown: Path
    png: Path
    svg: Path
    curves_csv: Path


def write_report(result: SimulationResult, out_dir: Path, *, title: str = "") -> ReportFiles:
    """results.csv, results.md, curves.png, curves.svg (and curves.csv) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        csv=out_dir / "results.csv",
        markdown=out_dir / "results.md",
        png=out_dir / "curves.png",
        svg=out_dir / "curves.svg",
        curves_csv=out_dir / "curves.csv",
    )
    write_csv(result, files.csv)
    heading = f"# {title}\n\n" if title else ""
    files.markdown.write_text(heading + to_markdown(result), encoding="utf-8")
    write_curves_csv(result, files.curves_csv)
    plot_curves(result, [files.png, files.svg], title=title)
    return files


# -- labeled data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabeledTexts:
    """Texts with one class each; ``labels`` index into ``classes``."""

    texts: list[str]
    labels: np.ndarray
    classes: list[str]
    source: str
    skipped_unlabeled: int = 0
    skipped_duplicates: int = 0

    def __len__(self) -> int:
        return len(self.texts)


def load_labeled_texts(
    path: Path,
    *,
    text_field: str | None = None,
    label_field: str | None = None,
    has_header: bool = True,
    fmt: str | None = None,
    classes: Sequence[str] | None = None,
) -> LabeledTexts:
    """A labeled file (CSV, TSV, JSONL) or a folder with one subfolder of ``.txt`` files per class.

    The rows are taken the way an import takes them: empty texts and repeats of a text (after
    whitespace normalisation, first occurrence kept) are skipped, and so are rows without a label
    here, since the oracle needs one; all three are counted. Rows with several labels are an
    error: the simulation is single-label. ``classes`` fixes the class order (to load a test set
    with the pool's classes); otherwise classes are sorted by name.

    Raises:
        InvalidInput: no labeled rows, multi-label rows, or labels outside ``classes``.
        ImportFailed: the file cannot be read (format, encoding, columns).
        FileNotFoundError: ``path`` does not exist.
    """
    from labella.services.importing import normalise_text

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    if path.is_dir():
        rows = _read_class_folder(path)
    else:
        rows = _read_labeled_file(
            path, text_field=text_field, label_field=label_field, has_header=has_header, fmt=fmt
        )
    texts: list[str] = []
    names: list[str] = []
    seen: set[str] = set()
    unlabeled = duplicates = 0
    for text, label in rows:
        normalised = normalise_text(text)
        if not normalised:
            continue
        if label is None:
            unlabeled += 1
            continue
        if normalised in seen:
            duplicates += 1
            continue
        seen.add(normalised)
        texts.append(text)
        names.append(label)
    if not texts:
        raise InvalidInput(
            f"{path.name} has no labeled rows; a simulation needs a label per item "
            "(name the label column with --label-field)"
        )
    classes = sorted(set(names)) if classes is None else list(classes)
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({name for name in names if name not in index})
    if unknown:
        raise InvalidInput(
            f"{path.name} has labels that the pool does not: {', '.join(map(repr, unknown[:10]))}"
        )
    return LabeledTexts(
        texts=texts,
        labels=np.asarray([index[name] for name in names], dtype=np.int64),
        classes=classes,
        source=str(path),
        skipped_unlabeled=unlabeled,
        skipped_duplicates=duplicates,
    )


def _read_labeled_file(
    path: Path,
    *,
    text_field: str | None,
    label_field: str | None,
    has_header: bool,
    fmt: str | None,
) -> Iterator[tuple[str, str | None]]:
    from labella.services.readers import RecordReader, detect_format

    fmt = detect_format(path.name, fmt)
    if fmt == "txt":
        raise InvalidInput(
            f"{path.name} is plain text, which carries no labels; use a CSV/TSV/JSONL file with "
            "a label column, or a folder with one subfolder of .txt files per class"
        )
    with path.open("rb") as stream:
        reader = RecordReader(
            stream,
            fmt=fmt,
            text_field=text_field,
            label_field=label_field,
            has_header=has_header,
        )
        for record in reader:
            if reader.label_field is None:
                raise InvalidInput(
                    f"{path.name} has no label column (columns: {', '.join(reader.columns)}); "
                    "name it with --label-field"
                )
            labels = record.labels
            if labels is not None and len(labels) > 1:
                raise InvalidInput(
                    f"{path.name} line {record.line} has {len(labels)} labels; simulate supports "
                    "single-label data"
                )
            yield record.text, (labels[0] if labels else None)


def _read_class_folder(root: Path) -> Iterator[tuple[str, str | None]]:
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise InvalidInput(
            f"folder {root.name} has no class subfolders; put each class's .txt files in a "
            "subfolder named after the class"
        )
    for class_dir in class_dirs:
        for file in sorted(class_dir.rglob("*.txt")):
            raw = file.read_bytes()
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise InvalidInput(
                    f"{file.relative_to(root)} is not valid UTF-8; save it as UTF-8"
                ) from exc
            yield text.strip(), class_dir.name


def embed_texts(
    texts: Sequence[str],
    *,
    cache_dir: Path,
    encoder_name: str | None = None,
    batch_size: int = 64,
    chunk: int = 512,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Embeddings of ``texts`` from the project's encoder, through the on-disk cache: a text
    embedded before (by a simulation or a project using the same cache) is not encoded again."""
    from labella.learners.cache import EmbeddingCache, embed_with_cache
    from labella.learners.encoders import MINILM_NAME, get_text_encoder
    from labella.services.importing import content_hash

    encoder = get_text_encoder(encoder_name or MINILM_NAME)
    with EmbeddingCache(cache_dir, encoder.name, encoder.dim) as cache:
        return embed_with_cache(
            encoder,
            cache,
            [content_hash(t) for t in texts],
            list(texts),
            batch_size=batch_size,
            progress=progress,
            chunk=chunk,
        )
