"""Query strategies for object detection: which unlabeled *images* to label next, from the boxes a
detector predicted on them. Pure numpy (scikit-learn only when k-means runs), no DB or HTTP.

A detector returns a different number of boxes per image, so the pool is ragged: a
:class:`DetectionPool` holds every box score of every image in one flat array, with ``offsets``
saying where each image's boxes start (the CSR layout: image ``i`` owns
``box_scores[offsets[i]:offsets[i + 1]]``). The classification :class:`~labella.strategies.PoolView`
has one row per item and cannot hold that, so detection strategies have their own small registry
(:func:`get_detection_strategy`) and conformance suite; they reuse the classification strategies'
errors, request checks, hyperparameter handling, top-k selection and cluster round-robin.

Informativeness of an image (:func:`image_informativeness`), after Brust et al., "Active Learning
for Deep Object Detection" (VISAPP 2019), who score each detection's uncertainty and aggregate it
over the image by its maximum, sum or mean, and Haussmann et al., "Scalable Active Learning for
Object Detection" (IEEE IV 2020), who compare entropy-based box scores with max/sum/mean
aggregation at scale and pair the score with diversity:

* each box above the display ``floor`` gets an uncertainty: the entropy of its score read as a
  Bernoulli probability (in bits, 1 at a score of 0.5, 0 at 0 or 1), or ``1 - score``;
* the image's boxes are aggregated by ``max`` (the single most doubtful object decides), ``mean``
  or ``sum`` (crowded images weigh more);
* an image with no confident box (none at or above ``confident``) gets ``empty_weight`` on top:
  the box scores cannot see objects the detector misses entirely, and an early detector misses
  many, so images it finds nothing sure in are the likeliest to hold them. Without the term such
  images score 0 under ``max``/``mean`` and would never be asked about.

Diversity, as in Haussmann et al. and in Cluster-Margin (Citovsky et al., "Batch Active Learning at
Scale", NeurIPS 2021): the ``candidate_factor × n`` most informative unlabeled images are spread
round-robin over the project's k-means clusters of image embeddings (``clusters``); with only
``embeddings`` the candidates are clustered into ``n`` groups and the most informative image of
each is taken (Zhdanov, "Diverse mini-batch Active Learning", 2019); with neither, the batch is the
top ``n`` by informativeness.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np

from labella.strategies._arrays import select_top_scores, top_k_indices
from labella.strategies.base import (
    KeywordParams,
    check_batch_request,
    check_picked,
    check_pool_has_unlabeled,
)
from labella.strategies.cluster_margin import round_robin_by_cluster
from labella.strategies.registry import UnknownStrategyError

BoxMeasure = Literal["entropy", "least_confidence"]
Aggregate = Literal["max", "mean", "sum"]
BOX_MEASURES: tuple[str, ...] = ("entropy", "least_confidence")
AGGREGATES: tuple[str, ...] = ("max", "mean", "sum")

DEFAULT_FLOOR = 0.3
"""The detector's display floor: boxes scoring below it are background, not predictions."""


@dataclass(frozen=True, eq=False)
class DetectionPool:
    """Read-only arrays describing a detection pool at query time.

    Attributes:
        labeled: bool ``(n_images,)``; True marks an image that can never be selected.
        box_scores: float ``(n_boxes,)``, every predicted box's score in [0, 1], image after
            image. Scores of labeled images are ignored (they may hold anything).
        offsets: int ``(n_images + 1,)``, non-decreasing, ``offsets[0] == 0`` and
            ``offsets[-1] == n_boxes``: image ``i``'s boxes are
            ``box_scores[offsets[i]:offsets[i + 1]]`` (an image may have none).
        embeddings: float ``(n_images, dim)`` image embeddings, or None.
        clusters: int ``(n_images,)`` non-negative cluster ids fitted once per project, or None.
    """

    labeled: np.ndarray
    box_scores: np.ndarray
    offsets: np.ndarray
    embeddings: np.ndarray | None = None
    clusters: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("labeled", "box_scores", "offsets", "embeddings", "clusters"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, np.ndarray):
                object.__setattr__(self, name, np.asarray(value))
        self._check()

    @classmethod
    def from_lists(
        cls,
        labeled: Any,
        scores: Sequence[Any],
        *,
        embeddings: Any = None,
        clusters: Any = None,
    ) -> DetectionPool:
        """A pool from one sequence of box scores per image (``[[0.9, 0.4], [], [0.7]]``)."""
        arrays = [np.asarray(s, dtype=np.float32).reshape(-1) for s in scores]
        counts = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float32)
        return cls(
            labeled=np.asarray(labeled, dtype=bool),
            box_scores=flat.astype(np.float32, copy=False),
            offsets=offsets,
            embeddings=embeddings,
            clusters=clusters,
        )

    @property
    def n_items(self) -> int:
        return int(self.labeled.shape[0])

    @property
    def n_unlabeled(self) -> int:
        return self.n_items - int(np.count_nonzero(self.labeled))

    def boxes_per_image(self) -> np.ndarray:
        return np.diff(self.offsets)

    def image_of_box(self) -> np.ndarray:
        """int64 ``(n_boxes,)``: the image each box belongs to."""
        return np.repeat(np.arange(self.n_items, dtype=np.int64), self.boxes_per_image())

    def subset(self, indices: np.ndarray) -> DetectionPool:
        """The pool restricted to ``indices`` (in that order), boxes and all."""
        indices = np.asarray(indices, dtype=np.int64)
        counts = self.boxes_per_image()[indices]
        starts = self.offsets[indices]
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        # the positions of the kept boxes: each image's run start..start+count
        within = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1], counts)
        positions = np.repeat(starts, counts) + within
        return DetectionPool(
            labeled=self.labeled[indices],
            box_scores=self.box_scores[positions],
            offsets=offsets,
            embeddings=None if self.embeddings is None else self.embeddings[indices],
            clusters=None if self.clusters is None else self.clusters[indices],
        )

    def _check(self) -> None:
        labeled, scores, offsets = self.labeled, self.box_scores, self.offsets
        if labeled.ndim != 1 or labeled.dtype != np.bool_:
            raise ValueError(
                "DetectionPool.labeled must be a 1-D boolean mask, "
                f"got dtype {labeled.dtype} with shape {labeled.shape}"
            )
        n = labeled.shape[0]
        if scores.ndim != 1 or scores.dtype.kind != "f":
            raise ValueError(
                "DetectionPool.box_scores must be a 1-D float array, "
                f"got dtype {scores.dtype} with shape {scores.shape}"
            )
        if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or offsets.shape[0] != n + 1:
            raise ValueError(
                f"DetectionPool.offsets must be {n + 1} integers (one per image, plus the end), "
                f"got dtype {offsets.dtype} with shape {offsets.shape}"
            )
        if int(offsets[0]) != 0 or int(offsets[-1]) != scores.shape[0]:
            raise ValueError(
                f"DetectionPool.offsets must start at 0 and end at the number of boxes "
                f"({scores.shape[0]}), got {int(offsets[0])} .. {int(offsets[-1])}"
            )
        if n and np.any(np.diff(offsets) < 0):
            raise ValueError("DetectionPool.offsets must be non-decreasing")
        if self.embeddings is not None and (
            self.embeddings.ndim != 2
            or self.embeddings.shape[0] != n
            or self.embeddings.dtype.kind != "f"
        ):
            raise ValueError(
                f"DetectionPool.embeddings must be floats of shape ({n}, dim), "
                f"got dtype {self.embeddings.dtype} with shape {self.embeddings.shape}"
            )
        if self.clusters is not None:
            clusters = self.clusters
            if clusters.shape != (n,) or clusters.dtype.kind not in "iu":
                raise ValueError(
                    f"DetectionPool.clusters must be {n} integer cluster ids, "
                    f"got dtype {clusters.dtype} with shape {clusters.shape}"
                )
            if clusters.size and int(clusters.min()) < 0:
                raise ValueError("DetectionPool.clusters must hold non-negative cluster ids")


# -- scores ---------------------------------------------------------------------------------------


def box_uncertainty(scores: np.ndarray, *, measure: BoxMeasure = "entropy") -> np.ndarray:
    """float32 uncertainty of each box score, in [0, 1].

    ``entropy``: the binary entropy of the score in bits (1 at 0.5, 0 at 0 and 1);
    ``least_confidence``: ``1 - score``.
    """
    p = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    if measure == "least_confidence":
        return (1.0 - p).astype(np.float32)
    if measure != "entropy":
        raise ValueError(f"measure must be one of {', '.join(BOX_MEASURES)}, got {measure!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1.0 - p) * np.log2(1.0 - p))
    return np.nan_to_num(h, nan=0.0).astype(np.float32)  # 0 log 0 = 0


def image_informativeness(
    box_scores: np.ndarray,
    offsets: np.ndarray,
    *,
    floor: float = DEFAULT_FLOOR,
    confident: float = 0.5,
    measure: BoxMeasure = "entropy",
    aggregate: Aggregate = "max",
    empty_weight: float = 0.5,
) -> np.ndarray:
    """float32 ``(n_images,)`` informativeness of each image (higher: label it sooner).

    The ``aggregate`` of the uncertainties of the image's boxes scoring at least ``floor`` (0 when
    it has none), plus ``empty_weight`` when no box of the image scores at least ``confident``.
    See the module docstring for the papers.
    """
    scores = np.asarray(box_scores, dtype=np.float32)
    offsets = np.asarray(offsets, dtype=np.int64)
    n_images = offsets.shape[0] - 1
    if scores.size and not np.isfinite(scores).all():
        raise ValueError("box scores contain NaN or infinite values")
    counts = np.diff(offsets)
    image = np.repeat(np.arange(n_images, dtype=np.int64), counts)
    kept = scores >= floor
    uncertainty = box_uncertainty(scores[kept], measure=measure)
    owner = image[kept]
    n_kept = np.bincount(owner, minlength=n_images)
    if aggregate == "max":
        out = np.zeros(n_images, dtype=np.float32)
        np.maximum.at(out, owner, uncertainty)
    elif aggregate in ("mean", "sum"):
        out = np.bincount(owner, weights=uncertainty, minlength=n_images).astype(np.float32)
        if aggregate == "mean":
            np.divide(out, np.maximum(n_kept, 1), out=out)
    else:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    n_confident = np.bincount(image[scores >= confident], minlength=n_images)
    out[n_confident == 0] += np.float32(empty_weight)
    return out


# -- strategies -----------------------------------------------------------------------------------


class DetectionStrategy(KeywordParams, ABC):
    """Chooses which unlabeled images to send to annotators next, from a :class:`DetectionPool`.

    The detection counterpart of :class:`~labella.strategies.QueryStrategy`: keyword-only
    hyperparameters stored under their own names, randomness only from the ``rng`` passed to
    :meth:`select`, and the same answer shape (unique ``int64`` indices of unlabeled images, most
    informative first, ``min(n, n_unlabeled)`` of them).
    """

    name: ClassVar[str]

    def select(self, pool: DetectionPool, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """Return up to ``n`` unlabeled image indices (``int64``), most informative first.

        Raises:
            EmptyPoolError: every image of the pool is labeled (or there is none).
        """
        n = check_batch_request(n, rng)
        if not isinstance(pool, DetectionPool):
            raise TypeError(f"pool must be a DetectionPool, got {type(pool).__name__}")
        n_take = check_pool_has_unlabeled(pool.n_items, pool.n_unlabeled, n, unit="images")
        if n_take == 0:
            return np.empty(0, dtype=np.int64)
        return check_picked(self.name, self._select(pool, n_take, rng), n_take)

    @abstractmethod
    def _select(self, pool: DetectionPool, n: int, rng: np.random.Generator) -> np.ndarray:
        """Pick ``n`` (``1 <= n <= pool.n_unlabeled``) unlabeled indices, best first."""

    def scores(self, pool: DetectionPool) -> np.ndarray:
        """float32 ``(n_images,)`` informativeness, higher first (constant for random)."""
        return np.zeros(pool.n_items, dtype=np.float32)


_DETECTION_REGISTRY: dict[str, type[DetectionStrategy]] = {}
DetectionStrategyT = TypeVar("DetectionStrategyT", bound=type[DetectionStrategy])


def register_detection(cls: DetectionStrategyT) -> DetectionStrategyT:
    """Class decorator adding a :class:`DetectionStrategy` to the detection registry."""
    if not (isinstance(cls, type) and issubclass(cls, DetectionStrategy)):
        raise TypeError(f"register_detection() expects a DetectionStrategy, got {cls!r}")
    if inspect.isabstract(cls):
        raise TypeError(f"{cls.__name__} is abstract and cannot be registered")
    existing = _DETECTION_REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"detection strategy name '{cls.name}' is already registered")
    _DETECTION_REGISTRY[cls.name] = cls
    return cls


def available_detection_strategies() -> list[str]:
    return sorted(_DETECTION_REGISTRY)


def get_detection_strategy(name: str, **params: Any) -> DetectionStrategy:
    """Instantiate the detection strategy registered under ``name``.

    Raises:
        UnknownStrategyError: no such strategy (the message lists the known ones).
        ValueError: a parameter the strategy does not take, or an invalid value.
    """
    cls = _DETECTION_REGISTRY.get(name)
    if cls is None:
        known = ", ".join(available_detection_strategies())
        raise UnknownStrategyError(f"unknown detection query strategy {name!r}; available: {known}")
    unexpected = sorted(set(params) - set(cls.param_names()))
    if unexpected:
        allowed = ", ".join(cls.param_names()) or "none"
        raise ValueError(
            f"detection strategy '{name}' got unknown parameter(s) {', '.join(unexpected)}; "
            f"accepted parameters: {allowed}"
        )
    return cls(**params)


@register_detection
class DetectionUncertainty(DetectionStrategy):
    """Uncertain images spread over clusters of image embeddings (see the module docstring:
    Brust et al. 2019; Haussmann et al. 2020; Citovsky et al. 2021; Zhdanov 2019).

    Hyperparameters:
        floor: box scores below it are background and ignored, in [0, 1).
        confident: a box at or above it is a confident detection, in (floor, 1].
        measure: ``"entropy"`` (binary entropy of the box score) or ``"least_confidence"``
            (``1 - score``).
        aggregate: ``"max"``, ``"mean"`` or ``"sum"`` over an image's boxes.
        empty_weight: added for an image with no confident box, >= 0. At the default 0.5 such an
            image ranks with one whose most doubtful box scores about 0.89 (entropy 0.5 bits).
        candidate_factor: candidates per batch slot for the diversity step, >= 1.
    """

    name = "detection_uncertainty"

    def __init__(
        self,
        *,
        floor: float = DEFAULT_FLOOR,
        confident: float = 0.5,
        measure: BoxMeasure = "entropy",
        aggregate: Aggregate = "max",
        empty_weight: float = 0.5,
        candidate_factor: float = 2.0,
    ) -> None:
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"detection_uncertainty: floor must be in [0, 1), got {floor!r}")
        if not floor < confident <= 1.0:
            raise ValueError(
                f"detection_uncertainty: confident must be in (floor, 1] = ({floor}, 1], "
                f"got {confident!r}"
            )
        if measure not in BOX_MEASURES:
            raise ValueError(
                f"detection_uncertainty: measure must be one of {', '.join(BOX_MEASURES)}, "
                f"got {measure!r}"
            )
        if aggregate not in AGGREGATES:
            raise ValueError(
                f"detection_uncertainty: aggregate must be one of {', '.join(AGGREGATES)}, "
                f"got {aggregate!r}"
            )
        if not np.isfinite(empty_weight) or empty_weight < 0:
            raise ValueError(
                f"detection_uncertainty: empty_weight must be >= 0, got {empty_weight!r}"
            )
        if not np.isfinite(candidate_factor) or candidate_factor < 1:
            raise ValueError(
                f"detection_uncertainty: candidate_factor must be >= 1, got {candidate_factor!r}"
            )
        self.floor = floor
        self.confident = confident
        self.measure = measure
        self.aggregate = aggregate
        self.empty_weight = empty_weight
        self.candidate_factor = candidate_factor

    def scores(self, pool: DetectionPool) -> np.ndarray:
        return image_informativeness(
            pool.box_scores,
            pool.offsets,
            floor=self.floor,
            confident=self.confident,
            measure=self.measure,
            aggregate=self.aggregate,
            empty_weight=self.empty_weight,
        )

    def _select(self, pool: DetectionPool, n: int, rng: np.random.Generator) -> np.ndarray:
        scores = self.scores(pool)
        if pool.clusters is None and pool.embeddings is None:
            return select_top_scores(scores, pool.labeled, n, rng=rng, source="box scores")
        n_candidates = min(pool.n_unlabeled, max(n, int(np.ceil(self.candidate_factor * n))))
        candidates = select_top_scores(
            scores.copy(), pool.labeled, n_candidates, rng=rng, source="box scores"
        )
        if pool.clusters is not None:
            return round_robin_by_cluster(candidates, pool.clusters, n)
        assert pool.embeddings is not None
        return _best_of_each_cluster(candidates, scores, pool.embeddings, n, rng)


def _best_of_each_cluster(
    candidates: np.ndarray,
    scores: np.ndarray,
    embeddings: np.ndarray,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """k-means the candidates into ``n`` groups and take each group's most informative one
    (Zhdanov 2019), best first; ties and k-means seeding come from ``rng``."""
    if candidates.size <= n:
        return candidates[:n]
    from labella.strategies.clustering import kmeans

    groups, _ = kmeans(
        embeddings[candidates], n, random_state=int(rng.integers(2**31 - 1)), n_threads=1
    )
    # candidates arrive best first, so the first candidate met in each group is its best
    _, first = np.unique(groups, return_index=True)
    chosen = candidates[np.sort(first)]
    if chosen.size < n:  # k-means merged identical points: fill from the remaining best
        rest = candidates[~np.isin(candidates, chosen)]
        chosen = np.concatenate([chosen, rest[: n - chosen.size]])
    order = top_k_indices(scores[chosen].copy(), chosen.size, rng=rng, source="box scores")
    return chosen[order]


@register_detection
class DetectionRandom(DetectionStrategy):
    """Uniformly random unlabeled images: the baseline every detection strategy must beat."""

    name = "detection_random"

    def __init__(self) -> None:
        pass

    def _select(self, pool: DetectionPool, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(np.flatnonzero(~pool.labeled), size=n, replace=False).astype(np.int64)
