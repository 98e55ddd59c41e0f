"""Small real image files for tests, made with Pillow, and the bad ones an import must survive."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP"}


def image_bytes(
    seed: int, *, fmt: str = "jpg", size: tuple[int, int] = (32, 24), mode: str = "RGB"
) -> bytes:
    """A distinct small picture per ``seed``: a coloured background with a shape on it."""
    r, g, b = (seed * 67) % 256, (seed * 131 + 40) % 256, (seed * 29 + 90) % 256
    image = Image.new("RGB", size, (r, g, b))
    draw = ImageDraw.Draw(image)
    w, h = size
    x = (seed * 7) % max(1, w // 2)
    draw.rectangle((x, h // 4, x + w // 3, h // 4 + h // 3), fill=(255 - r, 255 - g, 255 - b))
    if mode != "RGB":
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=FORMATS[fmt], **({"quality": 90} if fmt == "jpg" else {}))
    return out.getvalue()


def write_image(path: Path, seed: int, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lower().lstrip(".")
    path.write_bytes(image_bytes(seed, fmt="jpg" if fmt == "jpeg" else fmt, **kwargs))  # type: ignore[arg-type]
    return path


def truncated_jpeg(seed: int = 99) -> bytes:
    """A JPEG cut off half-way through its image data."""
    data = image_bytes(seed, size=(64, 64))
    return data[: len(data) // 2]


def corrupt_bytes() -> bytes:
    """Random bytes that are no image at all."""
    return bytes((i * 37 + 11) % 256 for i in range(2000))


def gif_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(out, format="GIF")
    return out.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header declares a huge canvas (a decompression bomb): decoding it would
    need ``width * height`` pixels of memory."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )
