"""The media store and the image checks it relies on: content addressing, safe references,
thumbnails made once, the allowed-roots check with symlinks."""

from __future__ import annotations

from pathlib import Path

import pytest

from labella.config import Settings
from labella.errors import Forbidden, InvalidInput, NotFound
from labella.images import ImageProblem, decode, probe
from labella.storage.media import MediaStore, check_allowed, file_uri, sha256_hex
from tests.image_files import corrupt_bytes, gif_bytes, image_bytes, png_bomb, truncated_jpeg


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(Settings(data_dir=tmp_path / "data", _env_file=None))  # type: ignore[call-arg]


def test_put_is_content_addressed_and_idempotent(store: MediaStore) -> None:
    data = image_bytes(1, fmt="webp")
    info = probe(data)
    first = store.put(data, info)
    again = store.put(data, info)
    assert first == again and first.media_uri == f"media:{sha256_hex(data)}.webp"
    assert first.path.read_bytes() == data
    assert store.path_of(first.media_uri) == first.path
    assert store.read(first.media_uri, expected_hash=sha256_hex(data)) == data
    assert first.path.is_relative_to(store.media_dir)


@pytest.mark.parametrize(
    "uri",
    [
        "media:../../etc/passwd",
        "media:" + "a" * 64 + ".exe",
        "media:/abs.jpg",
        "http://example.com/a.jpg",
        "file://remote-host/share/a.jpg",
    ],
)
def test_malformed_references_are_refused(store: MediaStore, uri: str) -> None:
    with pytest.raises(InvalidInput):
        store.path_of(uri)


def test_read_reports_missing_and_changed_files(store: MediaStore, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(image_bytes(1, fmt="png"))
    digest = sha256_hex(path.read_bytes())
    uri = file_uri(path)
    assert store.read(uri, expected_hash=digest) == path.read_bytes()
    path.write_bytes(image_bytes(2, fmt="png"))
    with pytest.raises(InvalidInput, match="changed on disk"):
        store.read(uri, expected_hash=digest)
    path.unlink()
    with pytest.raises(NotFound, match="no longer on disk"):
        store.read(uri)


def test_thumbnail_is_made_once_and_remade_if_removed(store: MediaStore) -> None:
    data = image_bytes(3, size=(300, 200))
    stored = store.put(data, probe(data))
    digest = sha256_hex(data)
    path = store.ensure_thumbnail(digest, stored.media_uri)
    made = path.stat().st_mtime_ns
    assert store.ensure_thumbnail(digest, stored.media_uri).stat().st_mtime_ns == made
    path.unlink()
    assert store.ensure_thumbnail(digest, stored.media_uri).exists()
    with pytest.raises(InvalidInput):
        store.thumbnail_path("../../x")


def test_allowed_roots_follow_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    inside = root / "a.jpg"
    inside.write_bytes(b"x")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"y")
    (root / "link.jpg").symlink_to(outside)
    assert check_allowed(inside, [root]) == inside.resolve()
    with pytest.raises(Forbidden):
        check_allowed(root / "link.jpg", [root])
    with pytest.raises(Forbidden):
        check_allowed(root / ".." / "outside.jpg", [root])
    with pytest.raises(InvalidInput, match="NUL"):
        check_allowed(root / "a\x00.jpg", [root])


def test_image_checks() -> None:
    info = probe(image_bytes(1, fmt="bmp", size=(30, 20)))
    assert (info.format, info.width, info.height, info.media_type) == ("BMP", 30, 20, "image/bmp")
    info, rgb = decode(image_bytes(2, fmt="png", mode="RGBA"))
    assert rgb.mode == "RGB" and info.format == "PNG"
    for bad, message in [
        (b"", "empty"),
        (corrupt_bytes(), "supported format"),
        (gif_bytes(), "supported format"),
        (png_bomb(), "decompression bomb"),
        (truncated_jpeg(), "truncated"),
    ]:
        with pytest.raises(ImageProblem, match=message):
            decode(bad)
    with pytest.raises(ImageProblem, match="decompression bomb"):
        probe(image_bytes(3, size=(50, 50)), max_pixels=2499)
