"""Serving an image item's picture and thumbnail (the routes only shape the HTTP answer)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from labella.config import Settings
from labella.errors import NotFound
from labella.images import MEDIA_TYPES
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.media import MediaStore
from labella.storage.models import Item

THUMBNAIL_TYPE = "image/jpeg"


@dataclass(frozen=True)
class ItemMedia:
    item_id: int
    content_hash: str
    media_uri: str
    media_type: str

    @property
    def etag(self) -> str:
        return f'"{self.content_hash}"'

    @property
    def thumbnail_etag(self) -> str:
        return f'"{self.content_hash}-thumb"'


def item_media(db: Database, project_id: int, item_id: int) -> ItemMedia:
    """Where an item's image is; NotFound for an item of another project or without an image."""
    with db.reader() as session:
        repo.get_project(session, project_id)
        row = session.execute(
            select(Item.id, Item.content_hash, Item.media_uri, Item.meta).where(
                Item.id == item_id, Item.project_id == project_id
            )
        ).one_or_none()
    if row is None:
        raise NotFound(f"item {item_id} does not exist in project {project_id}")
    if not row.media_uri:
        raise NotFound(f"item {item_id} has no image (it is a text item)")
    fmt = (row.meta or {}).get("format", "")
    return ItemMedia(
        item_id=int(row.id),
        content_hash=str(row.content_hash),
        media_uri=str(row.media_uri),
        media_type=MEDIA_TYPES.get(str(fmt), "application/octet-stream"),
    )


def read_image(settings: Settings, media: ItemMedia) -> bytes:
    """The original file's bytes, checked against the hash it was imported with."""
    return MediaStore(settings).read(media.media_uri, expected_hash=media.content_hash)


def thumbnail_bytes(settings: Settings, media: ItemMedia) -> bytes:
    """The thumbnail (made at import; remade from the original if the file was removed)."""
    store = MediaStore(settings)
    path = store.ensure_thumbnail(media.content_hash, media.media_uri)
    return path.read_bytes()
