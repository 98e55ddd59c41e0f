"""Image files: what Labella accepts, how it checks them, and how it decodes them.

One place decides which images are usable, so that import, thumbnails and encoders agree: JPEG,
PNG, WebP and BMP only, fully decodable (a truncated file is refused, not padded with grey), and
no larger than a pixel budget checked from the header *before* decoding, so that a decompression
bomb (a small file declaring a huge canvas) never reaches the decoder. Pillow is imported inside
the functions: nothing heavy at import time.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

SUPPORTED_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp"}
"""Pillow format name -> the file extension media is stored under."""
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp"}
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".dib"})
"""Extensions a folder or zip import looks at; the content decides the format, not the name."""

DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
THUMBNAIL_SIZE = 256
_EXIF_ORIENTATION = 0x0112
_QUARTER_TURNS = frozenset({5, 6, 7, 8})  # orientations that swap width and height
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError)


class ImageProblem(Exception):
    """An image that cannot be used; the message says why in words a user can act on."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    @property
    def extension(self) -> str:
        return SUPPORTED_FORMATS[self.format]


def supported_formats_text() -> str:
    return "JPEG, PNG, WebP, BMP"


def _open(data: bytes, *, max_pixels: int) -> Any:
    """Open (header only) and check format and size; the pixels are not decoded yet."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageProblem("the file is empty")
    try:
        with warnings.catch_warnings():
            # Our own pixel budget below is the check; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(SUPPORTED_FORMATS))
    except UnidentifiedImageError as exc:
        raise ImageProblem(
            f"not an image in a supported format ({supported_formats_text()})"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageProblem(f"decompression bomb refused: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise _problem(exc, "unreadable image header") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageProblem(f"the image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise ImageProblem(
            f"decompression bomb refused: {width}×{height} pixels is over the limit of "
            f"{max_pixels:,} pixels"
        )
    return image


def probe(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Format and size from the header, after the format and pixel-budget checks."""
    image = _open(data, max_pixels=max_pixels)
    return ImageInfo(format=str(image.format), width=image.size[0], height=image.size[1])


def decode(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> tuple[ImageInfo, Image]:
    """Fully decode ``data`` into an upright RGB image (EXIF orientation applied).

    ``draft_size`` lets the JPEG decoder scale down by a power of two while decoding when the
    caller only needs about that many pixels per side (a thumbnail, a 224 px encoder input):
    several times faster on camera photos, same result at the size asked for.
    """
    from PIL import Image, ImageOps

    image = _open(data, max_pixels=max_pixels)
    info = ImageInfo(format=str(image.format), width=image.size[0], height=image.size[1])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if draft_size is not None and info.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            if image.getexif().get(_EXIF_ORIENTATION, 1) in _QUARTER_TURNS:
                info = ImageInfo(format=info.format, width=info.height, height=info.width)
            image = ImageOps.exif_transpose(image) or image
            rgb = to_rgb(image)
    except _DECODE_ERRORS as exc:
        raise _problem(exc, "corrupt image data") from exc
    return info, rgb


def _problem(exc: BaseException, what: str) -> ImageProblem:
    reason = str(exc) or type(exc).__name__
    if "truncated" in reason.lower():
        return ImageProblem("the file is truncated: the image data ends early")
    return ImageProblem(f"{what} ({reason})")


def to_rgb(image: Image) -> Image:
    """RGB, with transparent areas over white (black behind a transparent logo hides it)."""
    from PIL import Image as PILImage

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def thumbnail_jpeg(image: Image, *, size: int = THUMBNAIL_SIZE, quality: int = 85) -> bytes:
    """A JPEG at most ``size`` px on its longer side (never enlarged)."""
    from PIL import Image as PILImage

    thumb = image.copy()
    thumb.thumbnail((size, size), PILImage.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()
