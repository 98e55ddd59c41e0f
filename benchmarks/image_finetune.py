"""Images: does fine-tuning the encoder on the labels active learning picked pay off?

The CIFAR-10 subset goes through the project's own import and encoder, as in
``image_efficiency.py``. For each strategy (the default of a new project, and random order) and
seed, the usual loop picks labels with the frozen encoder and the linear head (a seed set of 50
by k-means cold start, batches of 50, the head refitted after every batch). At each checkpoint
(300 and 1,000 labels by default) two learners are trained on exactly the labels picked so far
and scored on the test set: the linear head on the frozen features (what the loop used) and
:class:`labella.learners.image_finetune.ImageFineTuner` (EfficientNet-Lite0 fine-tuned end to
end). Reported: test accuracy of both and the fine-tuning time.

    python benchmarks/image_finetune.py --device cuda            # full pool and test set
    .venv/bin/python benchmarks/image_finetune.py --per-class 100 --test-per-class 50 \\
        --checkpoints 100 --seeds 0 --epochs 2                    # a quick look on the CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from image_efficiency import DATA, HERE, prepare  # type: ignore[import-not-found]
from labella.config import Settings
from labella.learners.heads import make_head
from labella.learners.image_finetune import ImageFineTuner
from labella.services import projects as project_service
from labella.services import simulation as sim
from labella.services.encoding import open_cache
from labella.storage.db import Database
from labella.storage.media import MediaStore
from labella.storage.migrate import upgrade_database
from labella.storage.models import Item, Label, LabelClass, LabelValue
from labella.strategies import fit_clusters, get_strategy


def load_split(
    db: Database, settings: Settings, project_id: int, encoder: str, classes: list[str]
) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """Embeddings, labels and image bytes of a project's items, in item order."""
    from sqlalchemy import select

    with db.reader() as session:
        rows = session.execute(
            select(Item.content_hash, Item.media_uri, LabelClass.name)
            .join(Label, Label.item_id == Item.id)
            .join(LabelValue, LabelValue.label_id == Label.id)
            .join(LabelClass, LabelClass.id == LabelValue.class_id)
            .where(Item.project_id == project_id, Label.is_current.is_(True))
            .order_by(Item.id)
        ).all()
    keys = [str(r[0]) for r in rows]
    y = np.array([classes.index(str(r[2])) for r in rows], dtype=np.int64)
    store = MediaStore(settings)
    images = [store.read(str(r[1]), expected_hash=str(r[0])) for r in rows]
    _, cache = open_cache(settings, encoder)
    try:
        X, found = cache.get_many(keys)
    finally:
        cache.close()
    if not found.all():
        raise SystemExit(f"{int((~found).sum())} images have no cached embedding")
    return X, y, images


def picked_order(
    X_pool: np.ndarray,
    y_pool: np.ndarray,
    *,
    strategy: str,
    seed: int,
    initial: int,
    batch: int,
    budget: int,
    n_classes: int,
    clusters: np.ndarray | None,
) -> np.ndarray:
    """Pool indices in the order the loop labels them (seed set first)."""
    seed_set = sim.select_seed_set(X_pool, initial, cold_start="kmeans_cold_start", seed=seed)
    order = [seed_set]
    schedule = sim.label_schedule(initial=initial, batch=batch, budget=budget)
    # the test set is irrelevant to the picks: score on a few pool rows to save time
    sim.run_loop(
        X_pool,
        y_pool,
        X_pool[:10],
        y_pool[:10],
        strategy=get_strategy(strategy),
        seed_set=seed_set,
        schedule=schedule,
        make_model=lambda: make_head("linear", n_classes=n_classes, random_state=seed),
        clusters=clusters,
        rng=np.random.default_rng([seed, zlib.crc32(strategy.encode())]),
        on_pick=order.append,
    )
    return np.concatenate(order)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--strategies", default="default,random")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--checkpoints", default="300,1000")
    parser.add_argument("--initial", type=int, default=50)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--test-per-class", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--work", type=Path, default=HERE / "out" / "image_efficiency")
    parser.add_argument("--cache-dir", type=Path, default=HERE / "out" / "cache")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    encoder = Settings().image_encoder
    classes = sorted(p.name for p in (args.data / "train").iterdir() if p.is_dir())
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        data_dir=args.work / "data",
        embedding_cache_dir=args.cache_dir,
        run_worker=False,
        _env_file=None,  # type: ignore[call-arg]
    )
    settings.ensure_dirs()
    db = Database.from_settings(settings)
    upgrade_database(db.engine)
    from image_efficiency import _subset  # type: ignore[import-not-found]

    split: dict[str, Any] = {}
    try:
        for name, per_class in (("train", args.per_class), ("test", args.test_per_class)):
            folder = _subset(args.data / name, per_class, args.work)
            size = f"-{per_class}" if per_class else ""
            project_id, _ = prepare(
                db,
                settings,
                f"cifar10-{name}{size}-{encoder}",
                folder,
                classes,
                encoder,
                data=args.data,
            )
            split[name] = load_split(db, settings, project_id, encoder, classes)
    finally:
        db.dispose()
    X_pool, y_pool, pool_images = split["train"]
    X_test, y_test, test_images = split["test"]
    n_classes = len(classes)
    print(f"pool {X_pool.shape}, test {X_test.shape}", file=sys.stderr, flush=True)

    tuner_params = {
        "image_size": args.image_size,
        "epochs": args.epochs,
        "lr": args.lr,
        "device": args.device,
        "num_threads": args.threads,
    }
    test_pixels = ImageFineTuner(**tuner_params).decode(test_images)
    default = project_service.default_strategy(multi_label=False)
    strategies = [default if s == "default" else s for s in args.strategies.split(",")]
    needs_clusters = any("clusters" in get_strategy(s).requires for s in strategies)
    clusters = (
        fit_clusters(X_pool, sim.default_n_clusters(len(X_pool)), random_state=0)
        if needs_clusters
        else None
    )
    rows: list[dict[str, Any]] = []
    for strategy in strategies:
        for seed in (int(s) for s in args.seeds.split(",")):
            order = picked_order(
                X_pool,
                y_pool,
                strategy=strategy,
                seed=seed,
                initial=args.initial,
                batch=args.batch,
                budget=checkpoints[-1],
                n_classes=n_classes,
                clusters=clusters,
            )
            for n in checkpoints:
                picked = order[:n]
                head = make_head("linear", n_classes=n_classes, random_state=seed)
                head.fit(X_pool[picked], y_pool[picked])
                linear = float((head.predict_proba(X_test).argmax(1) == y_test).mean())
                tuner = ImageFineTuner(random_state=seed, **tuner_params)
                tuner.fit([pool_images[i] for i in picked], y_pool[picked], n_classes=n_classes)
                tuned = float((tuner.predict_proba(test_pixels).argmax(1) == y_test).mean())
                row = {
                    "strategy": strategy,
                    "seed": seed,
                    "labels": n,
                    "linear_head": round(linear, 4),
                    "fine_tuned": round(tuned, 4),
                    "fit_seconds": round(tuner.fit_seconds_, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{len(X_pool):,} pool, {len(X_test):,} test; fine-tuning {tuner_params}")
    print("| strategy | labels | linear head (frozen) | fine-tuned | fit seconds |")
    print("|---|---:|---:|---:|---:|")
    for strategy in strategies:
        for n in checkpoints:
            mine = [r for r in rows if r["strategy"] == strategy and r["labels"] == n]
            lin = np.array([r["linear_head"] for r in mine])
            tun = np.array([r["fine_tuned"] for r in mine])
            secs = np.mean([r["fit_seconds"] for r in mine])
            print(
                f"| {strategy} | {n} | {lin.mean():.3f} ± {lin.std():.3f} "
                f"| {tun.mean():.3f} ± {tun.std():.3f} | {secs:.0f} |"
            )
    if args.out is not None:
        args.out.write_text(json.dumps({"params": tuner_params, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
