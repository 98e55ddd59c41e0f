"""CPU cost of fine-tuning EfficientNet-Lite0 on images (the ``finetune_encoder`` job of an image
project): images per second of one training epoch, and of embedding with the fine-tuned model.

Times only the optimiser steps (the weights' load and the images' decoding are timed apart), on
CIFAR-10 training images from ``../shared/data/images/cifar10/train``, at the job's settings.

    .venv/bin/python benchmarks/image_finetune_cpu.py --images 64 --image-size 224 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from labella.learners.image_finetune import ImageFineTuner

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "cifar10" / "train"


def load_images(n: int) -> tuple[list[bytes], np.ndarray, int]:
    """``n`` images taken round-robin over the class folders, with their class indices."""
    classes = sorted(p for p in DATA.iterdir() if p.is_dir())
    files = [sorted(c.glob("*.jpg")) for c in classes]
    images: list[bytes] = []
    labels: list[int] = []
    for i in range(n):
        c = i % len(classes)
        images.append(files[c][i // len(classes)].read_bytes())
        labels.append(c)
    return images, np.asarray(labels), len(classes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    images, y, n_classes = load_images(args.images)
    steps: list[float] = []

    def tick(done: int, total: int) -> None:
        steps.append(time.perf_counter())

    learner = ImageFineTuner(
        image_size=args.image_size,
        epochs=1,
        batch_size=args.batch_size,
        num_threads=args.threads,
        random_state=0,
    )
    started = time.perf_counter()
    pixels = learner.decode(images)
    decoded = time.perf_counter()
    learner.fit(pixels, y, n_classes=n_classes, progress=tick)
    # the first step also pays for building the model and loading its weights: time the others
    # from the end of the first, and the first apart
    per_step = np.diff(steps)
    train_rate = (len(images) - args.batch_size) / float(per_step.sum()) if len(steps) > 1 else None
    embed_started = time.perf_counter()
    learner.embed(pixels)
    embed_seconds = time.perf_counter() - embed_started
    print(
        json.dumps(
            {
                "images": len(images),
                "image_size": args.image_size,
                "threads": args.threads,
                "batch_size": args.batch_size,
                "decode_seconds": round(decoded - started, 3),
                "fit_seconds": round(learner.fit_seconds_, 3),
                "first_step_seconds_incl_model_load": round(steps[0] - decoded, 3),
                "train_images_per_second": round(train_rate, 2) if train_rate else None,
                "embed_images_per_second": round(len(images) / embed_seconds, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
