"""Label efficiency on images: the CIFAR-10 subset, through the project's own import and encoder.

The pool (``train/<class>/*.jpg``, 20,000 images) and the test set (``test/<class>/*.jpg``,
10,000) are imported as two image-classification projects with the folder import (class
subfolders become the oracle's labels), embedded by the encode job with the project's encoder
(default ``efficientnet-lite0``) into the on-disk embedding cache, and read back from that cache
by content hash. Then :func:`labella.services.simulation.simulate` replays active learning with
an oracle: a seed set of 50 by k-means cold start, batches of 50, the project's linear head
refitted after every batch, test accuracy after every batch, for the default strategy of a new
project and for random order, over 3 seeds.

Reported: labels needed to reach 95% and 99% of the accuracy of the same head trained on the whole
pool, accuracy at 300 and 1,000 labels, labels to reach 0.710 (the accuracy random order reaches
at 1,500 labels with plain 128 px features), and the encode job's throughput (images/s).

    .venv/bin/python benchmarks/image_efficiency.py
    .venv/bin/python benchmarks/image_efficiency.py --encoder efficientnet-lite0-plain
    .venv/bin/python benchmarks/image_efficiency.py --per-class 100 --seeds 0   # a quick look

The encoding is resumable: a killed run keeps every finished chunk in the cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labella.config import Settings
from labella.services import image_import
from labella.services import projects as project_service
from labella.services import simulation as sim
from labella.services.encoding import encode_project, open_cache
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database
from labella.storage.models import Item, Label, LabelClass, LabelValue

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "images" / "cifar10"
FIXED_TARGET = 0.710
"""Random order's accuracy at 1,500 labels with plain 128 px features (the issue's reference)."""


def _progress(what: str) -> Any:
    started = time.perf_counter()
    last = [0.0]

    def report(done: int, total: int, message: str | None = None, *, force: bool = False) -> None:
        now = time.perf_counter()
        if now - last[0] > 20 or done == total:
            last[0] = now
            rate = done / max(now - started, 1e-9)
            print(
                f"  {what}: {done:,}/{total:,} ({rate:.0f}/s) {message or ''}",
                file=sys.stderr,
                flush=True,
            )

    return report


def _subset(folder: Path, per_class: int | None, work: Path) -> Path:
    """The folder itself, or a folder of symlinks to the first ``per_class`` images per class."""
    if per_class is None:
        return folder
    out = work / f"{folder.name}-{per_class}"
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        target = out / class_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(class_dir.glob("*.jpg"))[:per_class]:
            link = target / image.name
            if not link.exists():
                link.symlink_to(image)
    return out


def prepare(
    db: Database,
    settings: Settings,
    name: str,
    folder: Path,
    classes: list[str],
    encoder: str,
    *,
    data: Path,
) -> tuple[int, dict[str, Any]]:
    """The project holding ``folder``'s images (imported and encoded once; re-runs reuse it)."""
    existing = {p.name: p for p in project_service.list_projects(db)}
    stats: dict[str, Any] = {}
    if name in existing:
        project = existing[name]
    else:
        project = project_service.create_project(
            db,
            project_service.ProjectSpec(
                name=name,
                kind="image_classification",
                classes=[project_service.ClassSpec(c) for c in classes],
                encoder=encoder,
            ),
        )
        started = time.perf_counter()
        report = image_import.import_folder(
            db,
            settings,
            project.id,
            folder,
            roots=[folder, data, *image_import.cli_roots(settings)],
            progress=_progress(f"importing {name}"),
        )
        seconds = time.perf_counter() - started
        stats["import"] = {
            "images": report.items_created,
            "seconds": round(seconds, 1),
            "images_per_s": round(report.items_created / seconds, 1),
            "skipped": report.skipped,
        }
        print(f"  imported {name}: {report.summary()} in {seconds:.0f} s", file=sys.stderr)
    result = encode_project(db, settings, project.id, progress=_progress(f"encoding {name}"))
    stats["encode"] = {
        "encoded": result.encoded,
        "from_cache": result.reused,
        "seconds": round(result.seconds, 1),
        "images_per_s": round(result.encoded / result.seconds, 2) if result.encoded else None,
    }
    return project.id, stats


def load_arrays(
    db: Database, settings: Settings, project_id: int, encoder: str, classes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (from the cache, by content hash) and the imported labels, in item order."""
    from sqlalchemy import select

    with db.reader() as session:
        rows = session.execute(
            select(Item.content_hash, LabelClass.name)
            .join(Label, Label.item_id == Item.id)
            .join(LabelValue, LabelValue.label_id == Label.id)
            .join(LabelClass, LabelClass.id == LabelValue.class_id)
            .where(Item.project_id == project_id, Label.is_current.is_(True))
            .order_by(Item.id)
        ).all()
    keys = [str(r[0]) for r in rows]
    y = np.array([classes.index(str(r[1])) for r in rows], dtype=np.int64)
    _, cache = open_cache(settings, encoder)
    try:
        X, found = cache.get_many(keys)
    finally:
        cache.close()
    if not found.all():
        raise SystemExit(f"{int((~found).sum())} images have no cached embedding")
    return X, y


def accuracy_at(result: sim.SimulationResult, strategy: str, n: int) -> list[float]:
    """Test accuracy with ``n`` labels, per seed (empty past the budget)."""
    hits = np.flatnonzero(result.n_labels == n)
    if not hits.size:
        return []
    return [float(v) for v in result.curves(strategy)[:, hits[0]]]


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.4f}" if values else "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--encoder", default=Settings().image_encoder)
    parser.add_argument("--strategies", default="default,random")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--initial", type=int, default=50)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--budget", type=int, default=1500)
    parser.add_argument("--per-class", type=int, default=None, help="a smaller pool")
    parser.add_argument(
        "--test-per-class", type=int, default=None, help="a smaller test set (default: as pool)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2-core machine)")
    parser.add_argument(
        "--head-only",
        action="store_true",
        help="ablation: keep only the 1280-d head part of efficientnet-lite0's multi-depth "
        "vector (each part is normalised on its own, so it slices out exactly)",
    )
    parser.add_argument(
        "--self-training",
        action="store_true",
        help="each model also learns from its confident predictions on the unlabeled pool, as "
        "new single-label projects train",
    )
    parser.add_argument("--work", type=Path, default=HERE / "out" / "image_efficiency")
    parser.add_argument("--cache-dir", type=Path, default=HERE / "out" / "cache")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    classes = sorted(p.name for p in (args.data / "train").iterdir() if p.is_dir())
    test_per_class = args.test_per_class or args.per_class
    suffix = f"-{args.per_class}" if args.per_class else ""
    if test_per_class != args.per_class:
        suffix += f"-t{test_per_class}"
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
    default = project_service.default_strategy(multi_label=False)
    strategies = [default if s == "default" else s for s in args.strategies.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    command = "python benchmarks/image_efficiency.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    try:
        stats = {}
        ids = {}
        for split, per_class in (("train", args.per_class), ("test", test_per_class)):
            folder = _subset(args.data / split, per_class, args.work)
            size = f"-{per_class}" if per_class else ""
            name = f"cifar10-{split}{size}-{args.encoder}"
            ids[split], stats[split] = prepare(
                db, settings, name, folder, classes, args.encoder, data=args.data
            )
            print(f"  {split}: {json.dumps(stats[split])}", file=sys.stderr)
        X_pool, y_pool = load_arrays(db, settings, ids["train"], args.encoder, classes)
        X_test, y_test = load_arrays(db, settings, ids["test"], args.encoder, classes)
    finally:
        db.dispose()
    if args.head_only:
        from labella.learners.encoders import l2_normalise
        from labella.learners.image_encoders import LITE0_DIM

        X_pool, X_test = (l2_normalise(X[:, :LITE0_DIM]) for X in (X_pool, X_test))
        suffix += "-headonly"
    print(f"pool {X_pool.shape}, test {X_test.shape}", file=sys.stderr)

    result = sim.simulate(
        X_pool,
        y_pool,
        X_test,
        y_test,
        strategies=strategies,
        seeds=seeds,
        n_classes=len(classes),
        initial=args.initial,
        batch=args.batch,
        budget=args.budget,
        progress=_progress("simulating"),
        self_training=args.self_training,
    )
    if args.self_training:
        suffix += "-selftrained"
    out = args.work / f"results{suffix}-{args.encoder}"
    sim.write_report(result, out, title=f"Label efficiency: CIFAR-10 subset, {args.encoder}")
    print(sim.to_markdown(result))
    full = result.full_pool_accuracy
    summary: dict[str, Any] = {
        "command": command.strip(),
        "encoder": args.encoder,
        "default_strategy": default,
        "pool": int(X_pool.shape[0]),
        "test": int(X_test.shape[0]),
        "dim": int(X_pool.shape[1]),
        "full_pool_accuracy": full,
        "stats": stats,
        "strategies": {},
    }
    print(
        f"\nfull-pool accuracy {full:.4f}; targets 95% = {0.95 * full:.4f}, 99% = {0.99 * full:.4f}"
    )
    for name in result.strategies:
        entry = {
            "labels_to_95": result.labels_to_reach(name, 0.95 * full).values.tolist(),
            "labels_to_99": result.labels_to_reach(name, 0.99 * full).values.tolist(),
            "labels_to_0.710": result.labels_to_reach(name, FIXED_TARGET).values.tolist(),
            "accuracy_at_300": accuracy_at(result, name, 300),
            "accuracy_at_1000": accuracy_at(result, name, 1000),
            "accuracy_at_budget": result.accuracy_at_budget(name).values.tolist(),
        }
        summary["strategies"][name] = entry
        print(
            f"{name:<16} to 95%: {result.labels_to_reach(name, 0.95 * full).format_count():>20}"
            f"  to 99%: {result.labels_to_reach(name, 0.99 * full).format_count():>20}"
            f"  to 0.710: {result.labels_to_reach(name, FIXED_TARGET).format_count():>20}"
            f"  acc@300 {_mean(entry['accuracy_at_300'])}"
            f"  acc@1000 {_mean(entry['accuracy_at_1000'])}"
        )
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
