"""Synthetic detection data: red squares (class 0) and blue circles (class 1) on plain pale
backgrounds, made with numpy and Pillow, deterministic under a seed."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

Box = tuple[int, int, int, int, int]


def shape_images(
    n: int, *, seed: int, size: int = 128, max_objects: int = 3
) -> tuple[list[np.ndarray], list[list[Box]]]:
    """``n`` RGB arrays ``(size, size, 3)`` and their boxes ``(class, x0, y0, x1, y1)``."""
    rng = np.random.RandomState(seed)
    images: list[np.ndarray] = []
    boxes: list[list[Box]] = []
    for _ in range(n):
        background = tuple(int(v) for v in rng.randint(170, 256, 3))
        image = Image.new("RGB", (size, size), background)
        draw = ImageDraw.Draw(image)
        placed: list[Box] = []
        for _ in range(rng.randint(1, max_objects + 1)):
            for _attempt in range(20):  # non-overlapping, else the last try stands
                side = int(rng.randint(18, 40))
                x, y = int(rng.randint(0, size - side)), int(rng.randint(0, size - side))
                if all(
                    x + side <= b[1] or b[3] <= x or y + side <= b[2] or b[4] <= y for b in placed
                ):
                    break
            cls = int(rng.randint(2))
            corners = [x, y, x + side - 1, y + side - 1]
            if cls == 0:
                draw.rectangle(corners, fill=(200, 30, 30))
            else:
                draw.ellipse(corners, fill=(30, 30, 200))
            placed.append((cls, x, y, x + side, y + side))
        images.append(np.asarray(image))
        boxes.append(placed)
    return images, boxes


def png_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(array).save(stream, format="PNG")
    return stream.getvalue()


def write_shapes_folder(
    root: Path, n: int, *, classes: tuple[str, str] = ("square", "circle"), seed: int = 0
) -> Path:
    """``n`` 96 px shape images as PNGs under ``root/images`` with Pascal VOC files under
    ``root/Annotations`` (the folder layout the detection import reads)."""
    from labella.services.detection_formats import Annotation, Box, write_voc

    arrays, boxes = shape_images(n, seed=seed, size=96)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(exist_ok=True)
    for i, (array, found) in enumerate(zip(arrays, boxes, strict=True)):
        name = f"img{i:02d}.png"
        Image.fromarray(array).save(root / "images" / name)
        annotation = Annotation(
            name, name, [Box(classes[c], x0, y0, x1, y1) for c, x0, y0, x1, y1 in found], 96, 96
        )
        (root / "Annotations" / f"img{i:02d}.xml").write_bytes(write_voc(annotation))
    return root
