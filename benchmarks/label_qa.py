"""Label-error detection: precision@k and recall@k of label QA on AG News with planted flips.

For each seed, ``--n`` labeled items are drawn from the AG News dev pool, ``--flip`` of them get a
wrong class (uniform over the other classes), and each ranking method lists suspects, most
suspicious first. k = the number of planted flips. Methods, all on the same MiniLM embeddings and
the project's default head (linear):

* ``cl_self_conf``: label QA as shipped, confident learning (Northcutt et al., 2021) on 5-fold
  out-of-fold probabilities, issues ranked by low self-confidence p_given (cleanlab's default);
* ``cl_margin``: the same issues ranked by normalised margin p_suggested - p_given;
* ``oof_self_conf``: every label ranked by out-of-fold self-confidence, no thresholds (ablation);
* ``insample_self_conf`` (the baseline): every label ranked by the self-confidence of one head
  fitted on all labels, flips included, i.e. what the trained model alone would say.

AG News has label noise of its own; a flagged natural error counts as a false positive here, so
precision is a lower bound. Embeddings come from the embedding cache (``--cache-dir``); a text
missing from it is an error (run benchmarks/label_efficiency.py first to fill it).

    .venv/bin/python benchmarks/label_qa.py
    .venv/bin/python benchmarks/label_qa.py --seeds 0 --n 500
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labella.learners.cache import EmbeddingCache
from labella.learners.heads import make_head
from labella.services.importing import content_hash
from labella.services.label_qa import find_label_issues, out_of_fold_probs

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _data import load_agnews  # noqa: E402

ENCODER = "all-MiniLM-L6-v2"
METHODS = ("cl_self_conf", "cl_margin", "oof_self_conf", "insample_self_conf")


def cached_embeddings(texts: Sequence[str], cache_dir: Path) -> np.ndarray:
    cache = EmbeddingCache(cache_dir, ENCODER, 384)
    try:
        X, found = cache.get_many([content_hash(t) for t in texts])
    finally:
        cache.close()
    if not found.all():
        raise SystemExit(
            f"{int((~found).sum())} texts are not in the cache at {cache_dir}; "
            "run benchmarks/label_efficiency.py --tasks agnews first"
        )
    return X


def rankings(X: np.ndarray, y: np.ndarray, n_classes: int, *, seed: int) -> dict[str, np.ndarray]:
    def new_head() -> object:
        return make_head("linear", n_classes=n_classes, random_state=seed)

    oof = out_of_fold_probs(new_head, X, y, n_classes=n_classes, folds=5, random_state=seed)
    rows = np.arange(len(y))
    insample = make_head("linear", n_classes=n_classes, random_state=seed).fit(X, y)
    in_probs = insample.predict_proba(X)
    return {
        "cl_margin": find_label_issues(oof, y, rank_by="margin").indices,
        "cl_self_conf": find_label_issues(oof, y, rank_by="self_confidence").indices,
        "oof_self_conf": np.argsort(oof[rows, y], kind="stable"),
        "insample_self_conf": np.argsort(in_probs[rows, y], kind="stable"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n", type=int, default=1000, help="labeled items per seed")
    parser.add_argument("--flip", type=float, default=0.05, help="fraction of labels flipped")
    parser.add_argument("--cache-dir", type=Path, default=HERE / "out" / "cache")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    task = load_agnews()
    pool = task.pool
    n_classes = len(pool.classes)
    X_all = cached_embeddings(pool.texts, args.cache_dir)
    print(f"AG News pool {len(pool):,} texts; n={args.n}, flip={args.flip:.0%}, seeds={seeds}")
    results: dict[str, list[tuple[float, float, int, float]]] = {m: [] for m in METHODS}
    seconds = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(pool), size=args.n, replace=False)
        X, y = X_all[chosen], pool.labels[chosen].copy()
        flipped = rng.choice(args.n, size=round(args.flip * args.n), replace=False)
        y[flipped] = (y[flipped] + rng.integers(1, n_classes, size=len(flipped))) % n_classes
        started = time.perf_counter()
        ranked = rankings(X, y, n_classes, seed=seed)
        seconds.append(time.perf_counter() - started)
        k = len(flipped)
        truth = set(flipped.tolist())
        for method, order in ranked.items():
            hits = len(set(order[:k].tolist()) & truth)
            # a method may flag fewer than k labels: precision over what it flagged
            precision = hits / max(1, min(k, len(order)))
            caught = len(set(order.tolist()) & truth) if method.startswith("cl_") else k
            results[method].append((precision, hits / k, len(order), caught / k))
        print(
            f"  seed {seed}: k={k}, "
            + ", ".join(f"{m} P@k {results[m][-1][0]:.2f}" for m in METHODS)
        )
    print()
    print("| method | precision@k | recall@k | labels flagged | recall of all flagged |")
    print("|---|---|---|---|---|")
    for method in METHODS:
        scores = np.asarray(results[method])
        p, r, flagged, recall_all = scores.mean(axis=0)
        p_sd, r_sd, _, _ = scores.std(axis=0)
        issues = method.startswith("cl_")
        flagged_text = f"{flagged:.0f} of {args.n}" if issues else "all (a ranking)"
        all_text = f"{recall_all:.3f}" if issues else "1 (trivially)"
        print(
            f"| {method} | {p:.3f} ± {p_sd:.3f} | {r:.3f} ± {r_sd:.3f} | {flagged_text} "
            f"| {all_text} |"
        )
    print(f"\nseconds per seed (all four rankings): {np.mean(seconds):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
