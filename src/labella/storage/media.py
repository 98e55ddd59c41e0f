"""The media store: where an image item's bytes and thumbnail live.

An item's ``media_uri`` is one of

* ``media:<sha256><ext>``: an uploaded image, stored once under ``data_dir/media/ab/<sha256><ext>``
  (content-addressed: the same photo uploaded to two projects is one file);
* ``file:///abs/path.jpg``: an image imported by path, referenced in place and never written to.

Thumbnails (JPEG, 256 px on the longer side) are made once per content hash under
``data_dir/thumbnails/ab/<sha256>.jpg`` and shared by every item with that content.

Nothing here ever writes outside ``data_dir``: file names come from the content hash, never from
the name a user or an archive gave. Paths a user gives for images referenced in place are checked
against the allowed roots (:func:`check_allowed`) after symlinks are resolved.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from labella.config import Settings
from labella.errors import Forbidden, InvalidInput, NotFound
from labella.images import SUPPORTED_FORMATS, ImageInfo, ImageProblem, decode, thumbnail_jpeg

MEDIA_SCHEME = "media:"
FILE_SCHEME = "file:"
_MEDIA_NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|png|webp|bmp)$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_uri(path: Path) -> str:
    return path.resolve().as_uri()


def is_within(path: Path, root: Path) -> bool:
    """Whether resolved ``path`` is ``root`` or inside it (both resolved, symlinks followed)."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def check_allowed(path: Path, roots: Sequence[Path], *, shown: str | None = None) -> Path:
    """``path`` resolved (symlinks followed), or Forbidden when it lies outside every root.

    The message names the path as the user gave it (``shown``), not where a symlink led. A path
    no file can have (a NUL in it) is InvalidInput.
    """
    if "\x00" in str(path):
        raise InvalidInput(
            f"{shown or str(path)!r} is not a path: it contains a NUL character",
            details={"path": shown or str(path)},
        )
    resolved = path.resolve()
    if any(is_within(resolved, root) for root in roots):
        return resolved
    raise Forbidden(
        f"{shown or str(path)!r} is outside the folders this server may read images from; "
        "an administrator can add its folder to LABELLA_IMPORT_ROOTS",
        details={"path": shown or str(path)},
    )


@dataclass(frozen=True)
class StoredImage:
    media_uri: str
    path: Path


class MediaStore:
    """Uploaded images and thumbnails under the settings' data directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.media_dir = settings.media_dir
        self.thumbnails_dir = settings.thumbnails_dir

    # -- originals ----------------------------------------------------------------------------

    def put(self, data: bytes, info: ImageInfo, digest: str | None = None) -> StoredImage:
        """Store ``data`` (already checked to be a supported image) once; returns its URI."""
        digest = digest or sha256_hex(data)
        name = f"{digest}{SUPPORTED_FORMATS[info.format]}"
        path = self.media_dir / digest[:2] / name
        if not path.exists():
            _write_atomically(path, data)
        return StoredImage(media_uri=MEDIA_SCHEME + name, path=path)

    def path_of(self, media_uri: str) -> Path:
        """The local file behind a media URI (which may no longer exist)."""
        if media_uri.startswith(MEDIA_SCHEME):
            name = media_uri[len(MEDIA_SCHEME) :]
            if not _MEDIA_NAME.match(name):
                raise InvalidInput(f"malformed media reference {media_uri!r}")
            return self.media_dir / name[:2] / name
        if media_uri.startswith(FILE_SCHEME):
            parts = urlsplit(media_uri)
            if parts.netloc not in ("", "localhost"):
                raise InvalidInput(f"media reference {media_uri!r} is not a local file")
            return Path(unquote(parts.path))
        raise InvalidInput(f"unknown media reference {media_uri!r}")

    def read(self, media_uri: str, *, expected_hash: str | None = None) -> bytes:
        """The image's bytes; NotFound when the file is gone, InvalidInput when it changed on
        disk since it was imported (its vectors and labels describe the old picture)."""
        path = self.path_of(media_uri)
        try:
            size = path.stat().st_size
            if size > self.settings.max_image_bytes:
                raise InvalidInput(f"{path.name} is now {size:,} bytes, over the image limit")
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(f"the image file {path.name!r} is no longer on disk") from exc
        except PermissionError as exc:
            raise NotFound(f"the image file {path.name!r} cannot be read (permission)") from exc
        if expected_hash is not None and sha256_hex(data) != expected_hash:
            raise InvalidInput(
                f"the image file {path.name!r} changed on disk after it was imported; "
                "import it again"
            )
        return data

    # -- thumbnails ---------------------------------------------------------------------------

    def thumbnail_path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise InvalidInput(f"malformed content hash {digest!r}")
        return self.thumbnails_dir / digest[:2] / f"{digest}.jpg"

    def has_thumbnail(self, digest: str) -> bool:
        return self.thumbnail_path(digest).exists()

    def save_thumbnail(self, digest: str, image: object) -> Path:
        """Write the thumbnail of a decoded image unless it exists already (made once)."""
        path = self.thumbnail_path(digest)
        if not path.exists():
            _write_atomically(path, thumbnail_jpeg(image))  # type: ignore[arg-type]
        return path

    def ensure_thumbnail(self, digest: str, media_uri: str) -> Path:
        """The thumbnail's path, made now from the original if it is missing (e.g. the
        thumbnails folder was cleared)."""
        path = self.thumbnail_path(digest)
        if path.exists():
            return path
        data = self.read(media_uri, expected_hash=digest)
        try:
            _, image = decode(
                data,
                max_pixels=self.settings.max_image_pixels,
                draft_size=2 * 256,
            )
        except ImageProblem as exc:
            raise InvalidInput(f"the image cannot be decoded: {exc}") from exc
        return self.save_thumbnail(digest, image)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: a reader never sees half a file,
    and two writers of the same content-addressed file simply race to the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
