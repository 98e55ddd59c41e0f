"""The contract every query strategy follows: a :class:`PoolView` in, ranked indices out.

A strategy never sees the database: the services build a :class:`PoolView` of plain arrays (the
labeled mask plus whatever model outputs exist) and call :meth:`QueryStrategy.select`. The base
class validates the request once (batch size, required inputs, single- vs multi-label pools, an
empty pool) so every strategy returns the same shape of answer: unique ``int64`` indices of
unlabeled items, most informative first, ``min(n, n_unlabeled)`` of them.
"""

from __future__ import annotations

import inspect
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from labella.strategies._arrays import select_top_scores

InputName = Literal["probs", "embeddings", "prob_samples", "clusters"]
INPUT_NAMES: frozenset[str] = frozenset({"probs", "embeddings", "prob_samples", "clusters"})

LabelMode = Literal["single", "multi", "any"]
"""Which pools a strategy accepts: single-label (softmax rows), multi-label (per-class sigmoid
probabilities) or either (the strategy does not read ``probs`` the way the two modes differ)."""

_INPUT_HINTS: dict[str, str] = {
    "probs": "predicted class probabilities of a trained model (n_items, n_classes)",
    "embeddings": "item embeddings (n_items, dim)",
    "prob_samples": "stochastic forward passes or ensemble members (n_samples, n_items, n_classes)",
    "clusters": "cluster ids from fit_clusters (n_items,)",
}


class EmptyPoolError(ValueError):
    """No unlabeled item is left to select from."""


class MissingInputError(ValueError):
    """The pool lacks an input (``probs``, ``embeddings``, ...) the strategy needs."""


class IncompatiblePoolError(ValueError):
    """The pool's label mode does not fit the strategy (e.g. margin on a multi-label pool)."""


@dataclass(frozen=True, eq=False)
class PoolView:
    """Read-only arrays describing the pool at query time; nothing is copied.

    Compared by identity (``eq=False``): element-wise array equality has no single truth value.

    Attributes:
        labeled: bool ``(n_items,)``; True marks an item that is already labeled and can never be
            selected.
        probs: float ``(n_items, n_classes)``: softmax rows for single-label pools, independent
            per-class probabilities for multi-label pools. Rows of labeled items are ignored, so
            they may hold anything (even NaN).
        embeddings: float ``(n_items, dim)``, L2-normalised.
        prob_samples: float ``(n_samples, n_items, n_classes)``: MC-dropout passes or ensemble
            members, for BALD.
        clusters: int ``(n_items,)``: non-negative cluster ids, fitted once per project with
            :func:`labella.strategies.fit_clusters` and reused.
        multi_label: whether ``probs`` are per-class (multi-label) probabilities.
        thresholds: float ``(n_classes,)``: per-class decision thresholds of a multi-label model,
            each in (0, 1); 0.5 when omitted.
    """

    labeled: np.ndarray
    probs: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    prob_samples: np.ndarray | None = None
    clusters: np.ndarray | None = None
    multi_label: bool = False
    thresholds: np.ndarray | None = None

    def __post_init__(self) -> None:
        for field in ("labeled", "probs", "embeddings", "prob_samples", "clusters", "thresholds"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, np.ndarray):
                object.__setattr__(self, field, np.asarray(value))
        self._check_shapes()

    @property
    def n_items(self) -> int:
        return int(self.labeled.shape[0])

    @property
    def n_unlabeled(self) -> int:
        return self.n_items - int(np.count_nonzero(self.labeled))

    @property
    def n_classes(self) -> int | None:
        if self.probs is not None:
            return int(self.probs.shape[1])
        if self.prob_samples is not None:
            return int(self.prob_samples.shape[2])
        return None

    def unlabeled_indices(self) -> np.ndarray:
        """``int64`` indices of the selectable items, ascending."""
        return np.flatnonzero(~self.labeled)

    def available_inputs(self) -> frozenset[str]:
        return frozenset(name for name in INPUT_NAMES if getattr(self, name) is not None)

    def class_thresholds(self) -> np.ndarray:
        """Per-class thresholds as float32, defaulting to 0.5 for every class."""
        if self.thresholds is not None:
            return np.asarray(self.thresholds, dtype=np.float32)
        n_classes = self.n_classes
        if n_classes is None:
            raise MissingInputError("thresholds need 'probs' or 'prob_samples' to know n_classes")
        return np.full(n_classes, 0.5, dtype=np.float32)

    def _check_shapes(self) -> None:
        labeled = self.labeled
        if labeled.ndim != 1 or labeled.dtype != np.bool_:
            raise ValueError(
                "PoolView.labeled must be a 1-D boolean mask, "
                f"got dtype {labeled.dtype} with shape {labeled.shape}"
            )
        if not isinstance(self.multi_label, bool | np.bool_):
            raise ValueError(f"PoolView.multi_label must be a bool, got {self.multi_label!r}")
        n = labeled.shape[0]
        _check_array("probs", self.probs, ndim=2, n_items=n, axis=0, kind="f")
        _check_array("embeddings", self.embeddings, ndim=2, n_items=n, axis=0, kind="f")
        _check_array("prob_samples", self.prob_samples, ndim=3, n_items=n, axis=1, kind="f")
        _check_array("clusters", self.clusters, ndim=1, n_items=n, axis=0, kind="iu")
        if self.probs is not None and self.probs.shape[1] < 1:
            raise ValueError("PoolView.probs must have at least one class column")
        if (
            self.probs is not None
            and self.prob_samples is not None
            and self.probs.shape[1] != self.prob_samples.shape[2]
        ):
            raise ValueError(
                f"PoolView.probs has {self.probs.shape[1]} classes but prob_samples has "
                f"{self.prob_samples.shape[2]}"
            )
        if self.prob_samples is not None and self.prob_samples.shape[0] < 1:
            raise ValueError("PoolView.prob_samples needs at least one sample")
        if self.clusters is not None and self.clusters.size and int(self.clusters.min()) < 0:
            raise ValueError("PoolView.clusters must hold non-negative cluster ids")
        if self.thresholds is not None:
            self._check_thresholds(self.thresholds)

    def _check_thresholds(self, thresholds: np.ndarray) -> None:
        n_classes = self.n_classes
        if thresholds.ndim != 1 or (n_classes is not None and thresholds.shape[0] != n_classes):
            raise ValueError(
                f"PoolView.thresholds must have shape ({n_classes},), got {thresholds.shape}"
            )
        if thresholds.dtype.kind != "f":
            raise ValueError(f"PoolView.thresholds must be floats, got dtype {thresholds.dtype}")
        if not np.all((thresholds > 0.0) & (thresholds < 1.0)):
            raise ValueError("PoolView.thresholds must lie strictly between 0 and 1")


def _check_array(
    name: str, value: np.ndarray | None, *, ndim: int, n_items: int, axis: int, kind: str
) -> None:
    if value is None:
        return
    if value.ndim != ndim:
        raise ValueError(f"PoolView.{name} must be {ndim}-D, got shape {value.shape}")
    if value.shape[axis] != n_items:
        raise ValueError(
            f"PoolView.{name} has {value.shape[axis]} items along axis {axis} "
            f"but labeled has {n_items}"
        )
    if value.dtype.kind not in kind:
        expected = "floating-point" if kind == "f" else "integer"
        raise ValueError(f"PoolView.{name} must be {expected}, got dtype {value.dtype}")


class KeywordParams:
    """Hyperparameters as keyword-only ``__init__`` arguments stored under the same attribute
    names: what the strategy registries use to list, clone and print a strategy."""

    @classmethod
    def param_names(cls) -> list[str]:
        """Names of the keyword-only hyperparameters of ``__init__``."""
        signature = inspect.signature(cls.__init__)
        return [
            p.name
            for p in signature.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self.get_params().items())
        return f"{type(self).__name__}({params})"


class QueryStrategy(KeywordParams, ABC):
    """Chooses which unlabeled items to send to annotators next.

    Subclasses set ``name`` and ``requires``, take their hyperparameters as keyword-only
    ``__init__`` arguments stored under the same attribute names, and implement
    :meth:`_select`, which receives an already validated pool and a batch size with
    ``1 <= n <= pool.n_unlabeled``. Randomness comes only from the ``rng`` passed to
    :meth:`select`, so the same seed gives the same batch.
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset()
    _label_mode: ClassVar[LabelMode] = "any"

    @property
    def label_mode(self) -> LabelMode:
        """``"single"``, ``"multi"`` or ``"any"``: which pools :meth:`select` accepts."""
        return self._label_mode

    def select(self, pool: PoolView, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """Return up to ``n`` unlabeled item indices (``int64``), most informative first.

        Raises:
            MissingInputError: the pool lacks an input listed in ``requires``.
            IncompatiblePoolError: a single-label strategy got a multi-label pool or vice versa.
            EmptyPoolError: every item of the pool is labeled.
        """
        n = check_batch_request(n, rng)
        self.check_pool(pool)
        n_take = check_pool_has_unlabeled(pool.n_items, pool.n_unlabeled, n)
        if n_take == 0:
            return np.empty(0, dtype=np.int64)
        return check_picked(self.name, self._select(pool, n_take, rng), n_take)

    def check_pool(self, pool: PoolView) -> None:
        """Raise if ``pool`` lacks a required input or has the wrong label mode."""
        missing = sorted(self.requires - pool.available_inputs())
        if missing:
            details = "; ".join(f"'{name}' ({_INPUT_HINTS[name]})" for name in missing)
            raise MissingInputError(
                f"strategy '{self.name}' needs {details}, which the pool does not provide"
            )
        mode = self.label_mode
        if mode == "single" and pool.multi_label:
            raise IncompatiblePoolError(
                f"strategy '{self.name}' scores single-label (softmax) probabilities and cannot "
                "rank a multi-label pool; use 'ml_margin', 'ml_entropy' or 'bald' instead"
            )
        if mode == "multi" and not pool.multi_label:
            raise IncompatiblePoolError(
                f"strategy '{self.name}' is for multi-label pools (per-class probabilities); "
                "use a single-label strategy such as 'margin' or 'entropy' instead"
            )

    @abstractmethod
    def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
        """Pick ``n`` (``1 <= n <= pool.n_unlabeled``) unlabeled indices, best first."""


class UncertaintyStrategy(QueryStrategy):
    """A strategy that ranks items by one score per item (higher = more informative).

    :meth:`scores` scores every row of the pool, labeled ones included (they are masked out at
    selection time, which is cheaper than copying the unlabeled rows out of ``probs``).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"probs"})
    score_source: ClassVar[str] = "probs"

    def scores(self, pool: PoolView) -> np.ndarray:
        """float32 ``(n_items,)`` informativeness of every item, higher = more informative."""
        self.check_pool(pool)
        return self._scores(pool)

    @abstractmethod
    def _scores(self, pool: PoolView) -> np.ndarray:
        """Score every row of an already validated pool."""

    def _select(self, pool: PoolView, n: int, rng: np.random.Generator) -> np.ndarray:
        return select_top_scores(
            self._scores(pool), pool.labeled, n, rng=rng, source=self.score_source
        )


# The checks of a ``select(pool, n, rng=...)`` call that do not depend on the pool's layout, shared
# with the detection strategies (labella.strategies.detection), whose ragged pools are no PoolView.


def check_batch_request(n: int, rng: np.random.Generator) -> int:
    """Validate the batch size ``n`` (a non-negative integer) and ``rng``; return ``n`` as an int.

    Raises:
        TypeError: ``n`` is not an integer (bools included) or ``rng`` is not a Generator.
        ValueError: ``n`` is negative.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"batch size n must be an integer, got {type(n).__name__}")
    n = int(n)
    if n < 0:
        raise ValueError(f"batch size n must be >= 0, got {n}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return n


def check_pool_has_unlabeled(n_items: int, n_unlabeled: int, n: int, *, unit: str = "items") -> int:
    """How many of the ``n`` asked for a strategy should pick: ``min(n, n_unlabeled)``.

    Raises:
        EmptyPoolError: nothing is left to pick (``unit`` names what the pool holds in the
            message: "items", "images").
    """
    if n_unlabeled == 0:
        detail = (
            "the pool is empty" if n_items == 0 else f"all {n_items} {unit} in the pool are labeled"
        )
        raise EmptyPoolError(f"no unlabeled {unit} left to query: {detail}")
    return min(n, n_unlabeled)


def check_picked(name: str, picked: Any, n_take: int) -> np.ndarray:
    """``picked`` as ``int64``, after checking a strategy returned exactly ``n_take`` indices."""
    picked = np.asarray(picked, dtype=np.int64)
    if picked.shape != (n_take,):
        raise RuntimeError(
            f"strategy '{name}' returned {picked.shape} indices, expected ({n_take},)"
        )
    return picked
