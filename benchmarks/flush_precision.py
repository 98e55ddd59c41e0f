"""Auto-label ("flush") to a target precision: how much of the pool it covers and the precision it
really delivers, with at most 10% of the pool labeled by humans.

AG News `dev.tsv` (9,979 rows after de-duplication) is the pool, embedded with MiniLM through the
on-disk cache. For each seed, the product's loop is replayed with an oracle:

* a random evaluation sample of ``--eval-size`` items is labeled (it calibrates, never trains);
* a seed set of 20 (k-means cold start), then batches of 20 picked by the strategy, until the
  humans have labeled ``--human-share`` of the pool in all (evaluation sample included);
* the project's head (linear, the default C) is fitted on the actively picked labels; its
  probabilities are calibrated on the evaluation sample (temperature scaling, then top-label
  calibration of the predicted class's confidence: ``learners.calibration.ConfidenceCalibrator``;
  ``--calibrations temperature`` for temperature scaling alone, the rule before 2026-11-23), and
  the unlabeled rest is auto-labeled at the lowest calibrated confidence whose selected items'
  mean confidence reaches the target (``services.autolabel.preview_precision``'s rule).

Reported per strategy and target: the share of the unlabeled rest auto-labeled (coverage), the
precision measured against the true labels, and the estimate the product would show. Baselines in
the same run: random order, plain margin (what modAL gives), and the full pool's labels (every
other item labeled, the model's ceiling; calibrated and measured on a held-out tenth).

With ``--finetune`` the product's fine-tuning path is replayed after the humans' labels: the
encoder is fine-tuned (``--method classifier``, the product's default,
:class:`labella.learners.finetune.ClassifierFineTuner`; or ``--method setfit``,
:class:`~labella.learners.finetune.SetFitLearner` with ``--max-pairs`` pairs) on the picked
labels (never the evaluation sample), the whole pool is re-encoded with the fine-tuned encoder, and
the head is refitted on the new embeddings, as the ``finetune_encoder`` job does; calibration and
the flush rule are unchanged. The frozen encoder on the same labels is reported beside it; the
full-pool ceiling is skipped (a fine-tune on 9,000 labels does not fit this machine's time).

With ``--self-training`` the heads self-train on the open rows (neither labeled nor in the
evaluation sample) as a new single-label text project's training does by default
(:mod:`labella.learners.self_training`): the head that ranks each batch, so the picks change, and
the head that auto-labels, on the frozen and on the fine-tuned vectors alike.

The "attainable share" is the most a threshold could cover at the target, placed knowing the true
labels (the model's ranking of its own confidence with a perfect calibration). With
``--calibration-sizes`` the temperature is also fitted on larger random samples of the rest (20
draws per size, measured on the remainder), to separate the learner's limit from the calibration
sample's.

    .venv/bin/python benchmarks/flush_precision.py --seeds 0,1,2
    .venv/bin/python benchmarks/flush_precision.py --seeds 0 --strategies cluster_margin \
        --finetune --calibration-sizes 400,800
    .venv/bin/python benchmarks/flush_precision.py --seeds 0 --strategies cluster_margin \
        --self-training --finetune --calibration-sizes 800
    .venv/bin/python benchmarks/flush_precision.py --seeds 0,1,2 --strategies cluster_margin \
        --self-training --calibrations top-label,temperature --calibration-sizes 100,400,800
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from _data import load_agnews
from labella.learners.calibration import ConfidenceCalibrator, TemperatureScaler
from labella.learners.heads import make_head
from labella.learners.self_training import SelfTrainedHead, sample_rows
from labella.services import simulation as sim
from labella.services.autolabel import _precision_cut
from labella.strategies import PoolView, fit_clusters, get_strategy

HERE = Path(__file__).resolve().parent
TARGETS = (0.95, 0.98)
GOALS = {0.95: 0.80, 0.98: 0.50}  # coverage the issue asks for at each target
CALIBRATION_NOTE = {"top-label": "", "temperature": ", temperature scaling only"}


def fit_head(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    seed: int,
    kind: str,
    *,
    unlabeled: np.ndarray | None = None,
) -> Any:
    """The project's head on the labels; with ``unlabeled`` vectors it self-trains on them as a
    single-label text project's training does (``learners.self_training``)."""

    def new() -> Any:
        return make_head(kind, n_classes=n_classes, random_state=seed)

    if unlabeled is None:
        return new().fit(X, y)
    return SelfTrainedHead(new, unlabeled).fit(X, y).head_


def open_rows(X: np.ndarray, closed: np.ndarray, seed: int) -> np.ndarray:
    """The vectors a project's training pseudo-labels: a seeded sample of the rows neither
    labeled nor in the evaluation sample (``services.training.self_training_pool``)."""
    return X[sample_rows(np.flatnonzero(~closed), random_state=seed)]


def active_labels(
    X: np.ndarray,
    y: np.ndarray,
    *,
    strategy: str,
    budget: int,
    excluded: np.ndarray,
    clusters: np.ndarray,
    n_classes: int,
    seed: int,
    kind: str,
    self_training: bool,
) -> np.ndarray:
    """The pool mask of the items the strategy has humans label (seed set included); with
    ``self_training`` the head that ranks each batch self-trains on the open rows."""
    rng = np.random.default_rng([seed, 1])
    labeled = excluded.copy()
    seed_pool = PoolView(labeled=labeled.copy(), embeddings=X, clusters=clusters)
    first = get_strategy("kmeans_cold_start").select(seed_pool, 20, rng=rng)
    labeled[first] = True
    picked = first.tolist()
    chooser = get_strategy(strategy)
    while len(picked) < budget:
        unlabeled = open_rows(X, labeled, seed) if self_training else None
        head = fit_head(X[picked], y[picked], n_classes, seed, kind, unlabeled=unlabeled)
        pool = PoolView(
            labeled=labeled, probs=head.predict_proba(X), embeddings=X, clusters=clusters
        )
        batch = chooser.select(pool, min(20, budget - len(picked)), rng=rng)
        labeled[batch] = True
        picked.extend(batch.tolist())
    mask = np.zeros(len(X), dtype=bool)
    mask[picked] = True
    return mask


def finetuned_embeddings(
    texts: list[str],
    y: np.ndarray,
    mask: np.ndarray,
    n_classes: int,
    seed: int,
    max_pairs: int,
    *,
    method: str,
    layer: str,
    members: int | None,
    cache: Path,
) -> np.ndarray:
    """The pool re-encoded by MiniLM fine-tuned (by ``method``) on the human labels in ``mask``.

    Saved to ``cache`` keyed by the labels' mask, so re-reading the flush with other settings does
    not pay for the fine-tune (up to half an hour of CPU on AG News) again."""
    from labella.learners.finetune import ClassifierFineTuner, SetFitLearner, TextFineTuner

    picked = np.flatnonzero(mask)
    copies = {} if members is None else {"n_members": members}
    learner: TextFineTuner = (
        SetFitLearner(random_state=seed, max_pairs=max_pairs, **copies)
        if method == "setfit"
        else ClassifierFineTuner(random_state=seed, layer=layer, **copies)
    )
    # the cosine layer's single fine-tunings were cached before there was a choice of layer or
    # of members: their names and keys stay as they were
    variant = max_pairs if method == "setfit" else method if layer == "cosine" else layer
    key = f"{zlib.crc32(picked.tobytes())}-{variant}"
    if learner.n_members > 1:
        key += f"-x{learner.n_members}"
        cache = cache.with_name(f"{cache.stem}_x{learner.n_members}{cache.suffix}")
    if cache.exists() and cache.with_suffix(".key").read_text() == key:
        return np.load(cache)
    learner.fit([texts[i] for i in picked], y[picked], n_classes=n_classes)
    features = learner.encode(texts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, features)
    cache.with_suffix(".key").write_text(key)
    return features


def flush(
    probs_eval: np.ndarray,
    y_eval: np.ndarray,
    probs_rest: np.ndarray,
    y_rest: np.ndarray,
    target: float,
    calibration: str,
) -> tuple[float, float | None, float | None, float]:
    """(coverage, measured precision, estimated precision, attainable coverage) of auto-labeling
    ``rest``; the last is :func:`attainable`'s. ``calibration``: "top-label" (the product's),
    or "temperature" alone."""
    if calibration == "temperature":  # the product's rule before top-label calibration
        scaler = TemperatureScaler().fit(probs_eval.astype(np.float64), y_eval)
        conf = scaler.transform(probs_rest.astype(np.float64)).max(axis=1).astype(np.float64)
    else:
        calibrator = ConfidenceCalibrator().fit(probs_eval.astype(np.float64), y_eval)
        conf = calibrator.transform(probs_rest.astype(np.float64))
    threshold, chosen = _precision_cut(conf, target)
    best = attainable(probs_rest, y_rest, target)
    if threshold is None or len(chosen) == 0:
        return 0.0, None, None, best
    measured = float(np.mean(probs_rest[chosen].argmax(axis=1) == y_rest[chosen]))
    return len(chosen) / len(y_rest), measured, float(conf[chosen].mean()), best


def attainable(probs: np.ndarray, y: np.ndarray, target: float) -> float:
    """The largest share of the rows that a confidence threshold could auto-label at a measured
    precision of at least ``target``, were it placed knowing the true labels: what a perfect
    calibration would reach with this model's ranking of its own confidence."""
    order = np.argsort(-probs.max(axis=1), kind="stable")
    correct = (probs.argmax(axis=1) == y)[order]
    precision = np.cumsum(correct) / np.arange(1, len(correct) + 1)
    good = np.flatnonzero(precision >= target)
    return float((good[-1] + 1) / len(y)) if len(good) else 0.0


def calibration_draws(
    probs: np.ndarray, y: np.ndarray, target: float, *, size: int, draws: int, calibration: str
) -> list[tuple[float, float | None, float | None, float]]:
    """:func:`flush` with the calibration sample drawn ``draws`` times at random from the rows
    (``size`` of them, then left out of the measurement) instead of the 100-item evaluation
    sample: how much a larger sample would place the threshold better."""
    results = []
    for draw in range(draws):
        rng = np.random.default_rng([draw, size])
        calib = np.zeros(len(y), dtype=bool)
        calib[rng.choice(len(y), size=size, replace=False)] = True
        results.append(flush(probs[calib], y[calib], probs[~calib], y[~calib], target, calibration))
    return results


def show_confident_errors(
    name: str,
    probs: np.ndarray,
    y: np.ndarray,
    pool_rows: np.ndarray,
    task: Any,
    limit: int,
) -> None:
    """The precision of the ``k`` rows the model is surest of, for a few ``k``, and the
    ``limit`` surest rows whose prediction disagrees with the data set's label (to read whether
    the label or the model is wrong)."""
    order = np.argsort(-probs.max(axis=1), kind="stable")
    predicted = probs.argmax(axis=1)
    correct = (predicted == y)[order]
    tops = [k for k in (500, 1000, 2000, 4000, len(y) // 2) if k <= len(y)]
    shares = ", ".join(
        f"top {k:,} ({k / len(y):.0%}): {np.mean(correct[:k]):.1%}" for k in sorted(set(tops))
    )
    print(f"\n{name}: precision of the surest rows: {shares}")
    classes = task.pool.classes
    wrong = [row for row in order if predicted[row] != y[row]][:limit]
    for rank, row in enumerate(wrong, start=1):
        position = int(np.flatnonzero(order == row)[0]) + 1
        text = " ".join(task.pool.texts[pool_rows[row]].split())[:160]
        print(
            f"  {rank}. #{position} of {len(y):,} by confidence ({probs[row].max():.3f}): "
            f"label {classes[y[row]]!r}, model {classes[predicted[row]]!r}: {text}"
        )


def fmt(values: list[float | None], pct: bool = True) -> str:
    real = [v for v in values if v is not None]
    if not real:
        return "none"
    scale = 100.0 if pct else 1.0
    text = f"{np.mean(real) * scale:.1f} ± {np.std(real) * scale:.1f}"
    if len(real) < len(values):
        text += f" ({len(values) - len(real)} run(s) selected nothing)"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--human-share", type=float, default=0.10)
    parser.add_argument("--eval-size", type=int, default=100)
    parser.add_argument("--strategies", default="cluster_margin,margin,random")
    parser.add_argument("--head", default="linear", choices=["linear", "mlp"])
    parser.add_argument("--cache-dir", type=Path, default=HERE / "out" / "cache")
    parser.add_argument(
        "--finetune", action="store_true", help="fine-tune the encoder on the human labels"
    )
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
    parser.add_argument(
        "--calibration-sizes",
        default="",
        help="comma-separated sizes of a calibration sample drawn from the rest (20 draws each), "
        "beside the evaluation sample",
    )
    parser.add_argument(
        "--calibrations",
        default="top-label",
        help="comma-separated: top-label (the product's: temperature scaling, then the predicted "
        "class's confidence recalibrated) and/or temperature (temperature scaling alone)",
    )
    parser.add_argument(
        "--self-training",
        action="store_true",
        help="the heads self-train on the open rows, as a single-label text project's training "
        "does by default: the head that ranks each batch and the one that auto-labels",
    )
    parser.add_argument(
        "--show-errors",
        type=int,
        default=0,
        help="print the N most confident auto-label candidates whose prediction disagrees with "
        "the data set's label, and the precision of the confidence ranking's top rows: how much "
        "of the shortfall at 98%% is label noise",
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [int(s) for s in args.calibration_sizes.split(",") if s]
    calibrations = args.calibrations.split(",")
    if unknown := set(calibrations) - set(CALIBRATION_NOTE):
        parser.error(f"--calibrations: unknown {sorted(unknown)}; known {list(CALIBRATION_NOTE)}")

    task = load_agnews()
    X = sim.embed_texts(task.pool.texts, cache_dir=args.cache_dir)
    y = np.asarray(task.pool.labels, dtype=np.int64)
    n, n_classes = len(y), len(task.pool.classes)
    budget = round(args.human_share * n) - args.eval_size
    clusters = fit_clusters(X, 100, random_state=0)
    print(
        f"AG News pool {n}, humans label {budget} + {args.eval_size} (evaluation sample)",
        file=sys.stderr,
    )

    rows: dict[tuple[str, float], list[tuple[float, float | None, float | None]]] = {}
    accuracies: dict[str, list[float]] = {}
    started = time.perf_counter()
    for seed in seeds:
        rng = np.random.default_rng([seed, 0])
        eval_idx = rng.choice(n, size=args.eval_size, replace=False)
        in_eval = np.zeros(n, dtype=bool)
        in_eval[eval_idx] = True
        for strategy in args.strategies.split(","):
            mask = active_labels(
                X,
                y,
                strategy=strategy,
                budget=budget,
                excluded=in_eval,
                clusters=clusters,
                n_classes=n_classes,
                seed=seed,
                kind=args.head,
                self_training=args.self_training,
            )
            learners = {strategy: X}
            if args.finetune:  # the frozen encoder on the same labels stays as the baseline
                title = (
                    "SetFit"
                    if args.method == "setfit"
                    else f"fine-tuned as a classifier ({args.layer} layer)"
                )
                tag = (
                    f"{args.method}-{args.layer}"
                    if args.method == "classifier" and args.layer != "cosine"
                    else args.method
                )
                learners[f"{strategy} + {title}"] = finetuned_embeddings(
                    task.pool.texts,
                    y,
                    mask,
                    n_classes,
                    seed,
                    args.max_pairs,
                    method=args.method,
                    layer=args.layer,
                    members=args.members,
                    cache=args.cache_dir / f"flush_{tag}_{strategy}_seed{seed}.npy",
                )
            rest = ~mask & ~in_eval
            for name, features in learners.items():
                unlabeled = None
                if args.self_training:
                    unlabeled = open_rows(features, mask | in_eval, seed)
                head = fit_head(
                    features[mask], y[mask], n_classes, seed, args.head, unlabeled=unlabeled
                )
                probs_rest = head.predict_proba(features[rest])
                accuracies.setdefault(name, []).append(
                    float(np.mean(probs_rest.argmax(1) == y[rest]))
                )
                probs_eval = head.predict_proba(features[in_eval])
                if args.show_errors:
                    show_confident_errors(
                        name, probs_rest, y[rest], np.flatnonzero(rest), task, args.show_errors
                    )
                for target, calibration in product(TARGETS, calibrations):
                    named = name + CALIBRATION_NOTE[calibration]
                    accuracies.setdefault(named, accuracies[name])
                    rows.setdefault((named, target), []).append(
                        flush(probs_eval, y[in_eval], probs_rest, y[rest], target, calibration)
                    )
                    for size in sizes:
                        key = f"{named}, calibrated on {size} of the rest (20 draws)"
                        accuracies.setdefault(key, accuracies[name])
                        rows.setdefault((key, target), []).extend(
                            calibration_draws(
                                probs_rest,
                                y[rest],
                                target,
                                size=size,
                                draws=20,
                                calibration=calibration,
                            )
                        )
            print(
                f"  seed {seed} {strategy}: {time.perf_counter() - started:.0f} s", file=sys.stderr
            )
        if args.finetune:
            continue
        # the ceiling: every item but a held-out tenth labeled
        holdout = rng.random(n) < 0.1
        calib = holdout & (rng.random(n) < 0.5)
        test = holdout & ~calib
        head = fit_head(X[~holdout], y[~holdout], n_classes, seed, args.head)
        accuracies.setdefault("full pool (ceiling)", []).append(
            float(np.mean(head.predict_proba(X[test]).argmax(1) == y[test]))
        )
        for target, calibration in product(TARGETS, calibrations):
            named = "full pool (ceiling)" + CALIBRATION_NOTE[calibration]
            accuracies.setdefault(named, accuracies["full pool (ceiling)"])
            rows.setdefault((named, target), []).append(
                flush(
                    head.predict_proba(X[calib]),
                    y[calib],
                    head.predict_proba(X[test]),
                    y[test],
                    target,
                    calibration,
                )
            )

    trained = ", self-trained" if args.self_training else ""
    print(
        f"\nAG News, {args.head} head{trained}, seeds {args.seeds}; "
        f"humans label {args.human_share:.0%}"
    )
    print(
        "| learner / strategy | accuracy on the rest | target | auto-labeled share "
        "| measured precision | estimated | attainable share | goal |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for (strategy, target), results in rows.items():
        coverage = [r[0] for r in results]
        measured = [r[1] for r in results]
        estimated = [r[2] for r in results]
        best: list[float | None] = [r[3] for r in results]
        met = np.mean(coverage) >= GOALS[target] and all(
            m is not None and m >= target for m in measured
        )
        verdict = "met" if met else "not met"
        print(
            f"| {strategy} | {fmt(accuracies[strategy])} | {target:.0%} | {fmt(coverage)} | "
            f"{fmt(measured)} | {fmt(estimated)} | {fmt(best)} | ≥ {GOALS[target]:.0%} {verdict} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
