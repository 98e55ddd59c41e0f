"""Image encoders: the real EfficientNet-Lite0 on small images and scikit-learn's sample photos,
a user's own torch model as a plug-in, and the one registry text and image encoders share."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from labella.images import ImageProblem
from labella.learners.encoders import (
    IMAGE,
    TEXT,
    Encoder,
    encoder_modality,
    encoder_names,
    get_encoder,
    get_text_encoder,
    register_encoder,
)
from labella.learners.image_encoders import (
    EfficientNetLite0Encoder,
    TorchImageEncoder,
    load_efficientnet_lite0,
    square_pixels,
)
from tests.image_files import corrupt_bytes, image_bytes, truncated_jpeg

IMAGENET_PALACE = 698
IMAGENET_DAISY = 985


def sample_photos() -> dict[str, bytes]:
    datasets = pytest.importorskip("sklearn.datasets")
    folder = Path(datasets.__file__).parent / "images"
    return {p.stem: p.read_bytes() for p in sorted(folder.glob("*.jpg"))}


def mirrored(data: bytes) -> bytes:
    import io

    with Image.open(io.BytesIO(data)) as image:
        out = io.BytesIO()
        ImageOps.mirror(image.convert("RGB")).save(out, format="PNG")
        return out.getvalue()


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0Encoder:
    encoder = get_encoder("efficientnet-lite0")
    assert isinstance(encoder, EfficientNetLite0Encoder)
    return encoder


def test_the_packaged_weights_are_imagenet_pretrained() -> None:
    """Known answers: the ImageNet head calls scikit-learn's photos a palace and a daisy."""
    photos = sample_photos()
    model = load_efficientnet_lite0().eval()
    for name, expected in (("china", IMAGENET_PALACE), ("flower", IMAGENET_DAISY)):
        x = square_pixels(photos[name], 224).astype(np.float32) / 127.5 - 1.0
        with torch.inference_mode():
            logits = model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
        assert int(logits.argmax()) == expected, name


def test_default_encoder_vectors(lite0: EfficientNetLite0Encoder) -> None:
    assert lite0.name == "efficientnet-lite0" and encoder_modality(lite0.name) == IMAGE
    assert isinstance(lite0, Encoder)
    images = [image_bytes(i, fmt=fmt) for i, fmt in enumerate(["jpg", "png", "webp", "bmp"])]
    vectors = lite0.encode(images, batch_size=3)
    assert vectors.shape == (4, lite0.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = lite0.encode(images[::-1], batch_size=4)[::-1]
    assert np.allclose(vectors, again, atol=1e-5)  # batching and order do not matter
    assert lite0.encode([]).shape == (0, lite0.dim)


def test_flip_averaging_makes_a_mirror_image_encode_the_same() -> None:
    photo = sample_photos()["china"]
    flipping = EfficientNetLite0Encoder("lite0-flip-test", hflip=True, image_size=128)
    with_flip = flipping.encode([photo, mirrored(photo)])
    assert np.allclose(with_flip[0], with_flip[1], atol=2e-3)
    plain = EfficientNetLite0Encoder("lite0-noflip-test", hflip=False, image_size=128)
    without = plain.encode([photo, mirrored(photo)])
    assert not np.allclose(without[0], without[1], atol=2e-3)


def test_features_tell_real_photos_apart(lite0: EfficientNetLite0Encoder) -> None:
    photos = sample_photos()
    china, flower = photos["china"], photos["flower"]
    # the same photo, recompressed smaller, stays much closer than the other photo
    import io

    with Image.open(io.BytesIO(china)) as image:
        small = io.BytesIO()
        image.resize((320, 213)).save(small, format="JPEG", quality=70)
    vectors = lite0.encode([china, small.getvalue(), flower])
    same, other = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert same > 0.9 and other < same - 0.2


def test_plain_variant_and_input_checks() -> None:
    plain = get_encoder("efficientnet-lite0-plain")
    assert plain.dim == 1280
    assert plain.encode([image_bytes(1, size=(20, 50))]).shape == (1, 1280)
    with pytest.raises(TypeError, match="not a single value"):
        plain.encode(image_bytes(1))
    with pytest.raises(TypeError, match=r"inputs\[1\] is str"):
        plain.encode([image_bytes(1), "a.jpg"])
    with pytest.raises(ImageProblem, match=r"inputs\[1\].*truncated"):
        plain.encode([image_bytes(1), truncated_jpeg()])
    with pytest.raises(ImageProblem, match=r"inputs\[0\]"):
        plain.encode([corrupt_bytes()])
    with pytest.raises(ValueError, match="batch_size"):
        plain.encode([image_bytes(1)], batch_size=0)
    with pytest.raises(ValueError, match="pool_blocks"):
        EfficientNetLite0Encoder("x", pool_blocks=(99,))


def test_square_pixels_keeps_the_aspect_ratio_by_cropping() -> None:
    wide = Image.new("RGB", (90, 30), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 30, 30))  # a blue left third, cropped away
    import io

    buffer = io.BytesIO()
    wide.save(buffer, format="PNG")
    pixels = square_pixels(buffer.getvalue(), 16)
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8
    assert pixels[..., 0].min() > 200 and pixels[..., 2].max() < 60


class TinyTrunk(torch.nn.Module):
    """A user's own model: a conv layer whose feature map the encoder average-pools."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 6, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)) + 1e-3


def test_a_users_torch_model_registers_as_an_encoder() -> None:
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    builds: list[int] = []

    def build() -> torch.nn.Module:
        builds.append(1)
        return TinyTrunk()

    register_encoder(
        name,
        lambda: TorchImageEncoder(name, dim=6, build=build, image_size=32),
        modality=IMAGE,
    )
    assert name in encoder_names(IMAGE) and name not in encoder_names(TEXT)
    encoder = get_encoder(name)
    assert get_encoder(name, modality=IMAGE) is encoder
    vectors = encoder.encode([image_bytes(1), image_bytes(2, fmt="png")])
    assert vectors.shape == (2, 6) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert builds == [1]
    with pytest.raises(ValueError, match="unknown text encoder"):
        get_text_encoder(name)
    with pytest.raises(ValueError, match="already registered"):
        register_encoder(name, lambda: None, modality=IMAGE)

    wrong = f"wrong-dim-{uuid.uuid4().hex[:8]}"
    register_encoder(
        wrong,
        lambda: TorchImageEncoder(wrong, dim=7, build=TinyTrunk, image_size=32),
        modality=IMAGE,
    )
    with pytest.raises(RuntimeError, match=r"expected \(batch, 7\)"):
        get_encoder(wrong).encode([image_bytes(1)])


def test_plugins_load_from_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package that declares a ``labella.encoders`` entry point is found by name."""
    from labella.learners import encoders

    name = f"entry-{uuid.uuid4().hex[:8]}"
    module = f"labella_test_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            f"""
            import torch
            from labella.learners.encoders import register_encoder
            from labella.learners.image_encoders import TorchImageEncoder

            def setup():
                register_encoder(
                    {name!r},
                    lambda: TorchImageEncoder(
                        {name!r}, dim=3, build=lambda: torch.nn.Identity(), image_size=16
                    ),
                    modality="image",
                )
            """
        )
    )
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[labella.encoders]\ntiny = {module}:setup\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(encoders, "_plugins_loaded", False)
    try:
        assert encoder_modality(name) == IMAGE
        assert get_encoder(name).encode([image_bytes(3)]).shape == (1, 3)
    finally:
        sys.modules.pop(module, None)


def test_registry_validates_what_it_is_given() -> None:
    with pytest.raises(ValueError, match="modality"):
        register_encoder("x-" + uuid.uuid4().hex, lambda: None, modality="audio")
    with pytest.raises(ValueError, match="unknown encoder 'nope'"):
        encoder_modality("nope")
    with pytest.raises(ValueError, match="unknown image encoder 'all-MiniLM-L6-v2'"):
        get_encoder("all-MiniLM-L6-v2", modality=IMAGE)
