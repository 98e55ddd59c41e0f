"""Query strategies: which unlabeled items to label next. Pure numpy, no DB or HTTP.

Build a :class:`PoolView` from the project's arrays, get a strategy by name and ask it for a
batch::

    strategy = get_strategy("margin")
    indices = strategy.select(PoolView(labeled=mask, probs=probs), 50, rng=np.random.default_rng(0))

Importing this package registers every built-in strategy; scikit-learn is imported only when a
clustering strategy runs.
"""

from labella.strategies.bald import BALD, bald_scores
from labella.strategies.base import (
    EmptyPoolError,
    IncompatiblePoolError,
    LabelMode,
    MissingInputError,
    PoolView,
    QueryStrategy,
    UncertaintyStrategy,
)
from labella.strategies.cluster_margin import ClusterMargin, round_robin_by_cluster
from labella.strategies.clustering import fit_clusters
from labella.strategies.cold_start import KMeansColdStart, TypiClust, typicality
from labella.strategies.coreset import KCenterGreedy, kcenter_greedy_indices
from labella.strategies.density import DensityWeighted, density_weighted_scores, information_density
from labella.strategies.exploration import ExplorationMix
from labella.strategies.multilabel import (
    MultiLabelEntropy,
    MultiLabelMargin,
    ml_entropy_scores,
    ml_margin_scores,
)
from labella.strategies.random_sampling import RandomSampling
from labella.strategies.registry import (
    UnknownStrategyError,
    available_strategies,
    get_strategy,
    register,
    strategy_class,
)
from labella.strategies.uncertainty import (
    EntropySampling,
    LeastConfidence,
    MarginSampling,
    RatioSampling,
    entropy_scores,
    least_confidence_scores,
    margin_scores,
    ratio_scores,
)

__all__ = [
    "BALD",
    "ClusterMargin",
    "DensityWeighted",
    "EmptyPoolError",
    "EntropySampling",
    "ExplorationMix",
    "IncompatiblePoolError",
    "KCenterGreedy",
    "KMeansColdStart",
    "LabelMode",
    "LeastConfidence",
    "MarginSampling",
    "MissingInputError",
    "MultiLabelEntropy",
    "MultiLabelMargin",
    "PoolView",
    "QueryStrategy",
    "RandomSampling",
    "RatioSampling",
    "TypiClust",
    "UncertaintyStrategy",
    "UnknownStrategyError",
    "available_strategies",
    "bald_scores",
    "density_weighted_scores",
    "entropy_scores",
    "fit_clusters",
    "get_strategy",
    "information_density",
    "kcenter_greedy_indices",
    "least_confidence_scores",
    "margin_scores",
    "ml_entropy_scores",
    "ml_margin_scores",
    "ratio_scores",
    "register",
    "round_robin_by_cluster",
    "strategy_class",
    "typicality",
]
