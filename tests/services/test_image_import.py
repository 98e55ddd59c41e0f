"""Image import: folders, zips, listings and uploads, and every kind of bad input, on real files
the tests make (and scikit-learn's sample photos), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from labella.config import Settings
from labella.errors import Forbidden, ImportFailed, InvalidInput
from labella.services.image_import import api_roots, cli_roots, import_files, import_folder
from labella.services.importing import import_file
from labella.storage.db import Database
from labella.storage.media import MediaStore
from labella.storage.models import ImportRecord, Item, Label, LabelValue
from tests.image_files import (
    corrupt_bytes,
    gif_bytes,
    image_bytes,
    png_bomb,
    truncated_jpeg,
    write_image,
)

MakeProject = Callable[..., Any]


@pytest.fixture
def image_project(make_project: MakeProject) -> Any:
    return make_project(("cat", "dog"), kind="image_classification")


def items_of(db: Database, project_id: int) -> list[Item]:
    with db.reader() as session:
        items = list(session.scalars(select(Item).where(Item.project_id == project_id)))
        session.expunge_all()
        return sorted(items, key=lambda i: i.text or "")


def labels_by_text(db: Database, project_id: int) -> dict[str, list[str]]:
    from labella.storage.models import LabelClass

    with db.reader() as session:
        rows = session.execute(
            select(Item.text, LabelClass.name)
            .join(Label, Label.item_id == Item.id)
            .join(LabelValue, LabelValue.label_id == Label.id)
            .join(LabelClass, LabelClass.id == LabelValue.class_id)
            .where(Item.project_id == project_id, Label.is_current.is_(True))
        ).all()
    out: dict[str, list[str]] = {}
    for text, name in rows:
        out.setdefault(text, []).append(name)
    return {k: sorted(v) for k, v in out.items()}


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def count(db: Database, model: Any, project_id: int) -> int:
    with db.reader() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(model).where(model.project_id == project_id)
            )
            or 0
        )


def test_folder_with_class_subfolders_is_referenced_in_place(
    db: Database, settings: Settings, image_project: Any, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "cat" / "a.jpg", 1)
    write_image(photos / "cat" / "b.png", 2, mode="RGBA")
    write_image(photos / "dog" / "c.webp", 3)
    write_image(photos / "dog" / "deep" / "d.bmp", 4)
    write_image(photos / "loose.jpeg", 5, size=(40, 64))
    (photos / "notes.txt").write_text("not an image")
    before = {p: p.stat().st_mtime_ns for p in photos.rglob("*")}

    report = import_folder(
        db, settings, image_project.id, photos, roots=cli_roots(settings, photos)
    )

    assert (report.images_found, report.items_created, report.labels_created) == (5, 5, 4)
    assert (report.referenced, report.stored, report.skipped, report.other_files) == (5, 0, 0, 1)
    assert report.format == "folder" and report.labels_from == "subfolders"
    assert report.encode_job_id is not None
    assert labels_by_text(db, image_project.id) == {
        "cat/a.jpg": ["cat"],
        "cat/b.png": ["cat"],
        "dog/c.webp": ["dog"],
        "dog/deep/d.bmp": ["dog"],
    }
    items = items_of(db, image_project.id)
    by_name = {item.text: item for item in items}
    loose = by_name["loose.jpeg"]
    assert loose.status == "unlabeled"
    assert loose.media_uri == (photos / "loose.jpeg").resolve().as_uri()
    assert loose.meta is not None
    assert (loose.meta["width"], loose.meta["height"], loose.meta["format"]) == (40, 64, "JPEG")
    assert {item.meta["format"] for item in items if item.meta} == {"JPEG", "PNG", "WEBP", "BMP"}
    # referenced in place: the source folder is untouched, nothing was copied into media/
    assert {p: p.stat().st_mtime_ns for p in photos.rglob("*")} == before
    assert not settings.media_dir.exists() or not any(settings.media_dir.rglob("*.*"))
    store = MediaStore(settings)
    assert all(store.has_thumbnail(item.content_hash) for item in items)
    assert report.thumbnails_made == 5


def test_thumbnails_are_made_once(
    db: Database, settings: Settings, make_project: MakeProject, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "a.jpg", 1, size=(600, 300))
    first = make_project(("cat", "dog"), kind="image_classification")
    report = import_folder(db, settings, first.id, photos, roots=[tmp_path])
    assert report.thumbnails_made == 1
    (item,) = items_of(db, first.id)
    thumb = MediaStore(settings).thumbnail_path(item.content_hash)
    made = thumb.stat().st_mtime_ns
    from PIL import Image

    with Image.open(thumb) as image:
        assert image.format == "JPEG" and max(image.size) == 256 and image.size == (256, 128)

    second = make_project(("cat", "dog"), kind="image_classification")
    again = import_folder(db, settings, second.id, photos, roots=[tmp_path])
    assert again.items_created == 1 and again.thumbnails_made == 0
    assert thumb.stat().st_mtime_ns == made


def test_every_bad_image_is_reported_by_name_and_skipped(
    db: Database, settings: Settings, image_project: Any, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "cat" / "good.jpg", 1)
    (photos / "cat" / "truncated.jpg").write_bytes(truncated_jpeg())
    (photos / "cat" / "noise.jpg").write_bytes(corrupt_bytes())
    (photos / "dog").mkdir()
    (photos / "dog" / "animated.gif").write_bytes(gif_bytes())
    (photos / "dog" / "gif-named.png").write_bytes(gif_bytes())
    (photos / "dog" / "bomb.png").write_bytes(png_bomb())
    (photos / "dog" / "empty.jpg").write_bytes(b"")
    (photos / "dog" / "shell.jpg").write_text("#!/bin/sh\necho hi\n")
    outside = tmp_path / "secret" / "secret.jpg"
    write_image(outside, 9)
    (photos / "dog" / "link.jpg").symlink_to(outside)

    report = import_folder(db, settings, image_project.id, photos, roots=[photos])

    assert report.items_created == 1 and report.images_found == 9
    reasons = {s.name: s.reason for s in report.skipped_examples}
    assert set(reasons) == {
        "cat/truncated.jpg",
        "cat/noise.jpg",
        "dog/animated.gif",
        "dog/gif-named.png",
        "dog/bomb.png",
        "dog/empty.jpg",
        "dog/shell.jpg",
        "dog/link.jpg",
    }
    assert "truncated" in reasons["cat/truncated.jpg"]
    assert "not an image in a supported format" in reasons["cat/noise.jpg"]
    assert "unsupported image format '.gif'" in reasons["dog/animated.gif"]
    assert "supported format" in reasons["dog/gif-named.png"]  # the content decides, not the name
    assert "decompression bomb" in reasons["dog/bomb.png"]
    assert "empty" in reasons["dog/empty.jpg"]
    assert "outside the allowed folders" in reasons["dog/link.jpg"]
    assert report.skipped == 8
    assert [i.text for i in items_of(db, image_project.id)] == ["cat/good.jpg"]


def test_truncated_image_data_and_the_pixel_budget(
    db: Database, settings: Settings, image_project: Any, tmp_path: Path
) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    # a valid header, then image data that stops early (the decoder, not the header, fails)
    noisy = Image.effect_noise((128, 128), 60).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    (photos / "cut.jpg").write_bytes(data[: int(len(data) * 0.6)])
    noisy.save(photos / "cut.png")
    (photos / "cut.png").write_bytes((photos / "cut.png").read_bytes()[:-5000])
    write_image(photos / "big.png", 3, size=(200, 120))
    settings.max_image_pixels = 20_000

    report = import_folder(db, settings, image_project.id, photos, roots=[photos])

    reasons = {s.name: s.reason for s in report.skipped_examples}
    assert "truncated" in reasons["cut.jpg"] and "truncated" in reasons["cut.png"]
    assert "decompression bomb" in reasons["big.png"] and "20,000" in reasons["big.png"]
    assert report.items_created == 0 and report.encode_job_id is None


def test_zip_with_unsafe_members_never_writes_outside_the_data_dir(
    db: Database, settings: Settings, image_project: Any, tmp_path: Path
) -> None:
    settings.max_image_bytes = 100_000
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("photos/cat/one.jpg", image_bytes(1))
        zf.writestr("photos/dog/two.png", image_bytes(2, fmt="png"))
        zf.writestr("photos/three.webp", image_bytes(3, fmt="webp"))
        zf.writestr("../escape.jpg", image_bytes(4))
        zf.writestr("photos/../../escape2.jpg", image_bytes(5))
        zf.writestr("/tmp/absolute.jpg", image_bytes(6))
        zf.writestr("C:\\windows\\drive.jpg", image_bytes(7))
        zf.writestr("photos/dog/zipbomb.png", b"\x00" * 5_000_000)  # inflates 5 MB
        zf.writestr("photos/cat/anim.gif", gif_bytes())
        link = zipfile.ZipInfo("photos/cat/link.jpg")
        link.external_attr = (0o120777 << 16) | 0
        zf.writestr(link, "/etc/passwd")
        zf.writestr("photos/README.md", "hello")
        zf.writestr("__MACOSX/photos/._one.jpg", b"junk")
    archive.seek(0)
    outside_before = tree(tmp_path)

    report = import_files(
        db, settings, image_project.id, [("upload.zip", archive)], roots=api_roots(settings)
    )

    assert report.format == "zip" and report.labels_from == "subfolders"
    assert (report.items_created, report.labels_created, report.stored) == (3, 2, 3)
    assert labels_by_text(db, image_project.id) == {"cat/one.jpg": ["cat"], "dog/two.png": ["dog"]}
    reasons = {s.name: s.reason for s in report.skipped_examples}
    for name in ("../escape.jpg", "photos/../../escape2.jpg", "/tmp/absolute.jpg"):
        assert "leaves the archive" in reasons[f"upload.zip:{name}"], name
    assert "leaves the archive" in reasons["upload.zip:C:\\windows\\drive.jpg"]
    assert "decompression bomb" in reasons["dog/zipbomb.png"]
    assert "symbolic link" in reasons["upload.zip:photos/cat/link.jpg"]
    assert "unsupported image format" in reasons["upload.zip:photos/cat/anim.gif"]
    assert report.skipped == 7 and report.other_files == 2
    # nothing appeared outside the data dir; inside it, only content-addressed files
    new_outside = tree(tmp_path) - outside_before
    data_dir = settings.data_dir.relative_to(tmp_path).as_posix()
    assert all(p.startswith(data_dir) for p in new_outside), new_outside
    assert not (tmp_path / "escape.jpg").exists() and not Path("/tmp/absolute.jpg").exists()
    stored = sorted(p.name for p in settings.media_dir.rglob("*") if p.is_file())
    assert len(stored) == 3 and all(len(Path(n).stem) == 64 for n in stored)
    for item in items_of(db, image_project.id):
        assert item.media_uri is not None and item.media_uri.startswith("media:")
        assert MediaStore(settings).path_of(item.media_uri).is_file()


def test_a_file_that_is_not_a_zip_is_reported(
    db: Database, settings: Settings, image_project: Any
) -> None:
    report = import_files(
        db,
        settings,
        image_project.id,
        [("photos.zip", io.BytesIO(b"PK\x03\x04 definitely not a zip"))],
        roots=api_roots(settings),
    )
    assert report.items_created == 0 and report.skipped == 1
    assert "not a readable zip" in report.skipped_examples[0].reason


def test_csv_listing_with_paths_uris_labels_ids_and_extra_columns(
    db: Database, settings: Settings, make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project(("cat", "dog", "outdoor"), kind="image_classification", multi_label=True)
    photos = tmp_path / "photos"
    a = write_image(photos / "a.jpg", 1)
    b = write_image(photos / "sub" / "b.png", 2)
    c = write_image(photos / "c d.webp", 3)
    listing = (
        "path,label,id,camera\n"
        f"{a},cat|outdoor,A1,nikon\n"
        "sub/b.png,dog,B2,canon\n"
        f"{c.resolve().as_uri()},,C3,\n"
        "https://example.com/cat.jpg,cat,D4,\n"
        "missing.jpg,dog,E5,\n"
        "sub,cat,F6,\n"
    )
    report = import_files(
        db,
        settings,
        project.id,
        [("list.csv", io.BytesIO(listing.encode()))],
        roots=[tmp_path],
        base_dir=photos,
    )
    assert report.format == "csv"
    assert (report.items_created, report.labels_created) == (3, 2)
    reasons = {s.name: s.reason for s in report.skipped_examples}
    assert "never downloads" in reasons["https://example.com/cat.jpg"]
    assert "no such file" in reasons["missing.jpg"]
    assert "folder" in reasons["sub"] or "regular file" in reasons["sub"]
    items = {i.external_id: i for i in items_of(db, project.id)}
    assert set(items) == {"A1", "B2", "C3"}
    assert items["A1"].meta is not None and items["A1"].meta["camera"] == "nikon"
    assert items["B2"].media_uri == b.resolve().as_uri()
    assert items["C3"].status == "unlabeled"
    assert labels_by_text(db, project.id)[str(a)] == ["cat", "outdoor"]


def test_jsonl_listing_and_a_label_for_every_upload(
    db: Database, settings: Settings, image_project: Any, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    a = write_image(photos / "a.jpg", 1)
    lines = [json.dumps({"image": str(a), "label": "dog", "note": "from jsonl"})]
    report = import_files(
        db,
        settings,
        image_project.id,
        [
            ("list.jsonl", io.BytesIO("\n".join(lines).encode())),
            ("upload-1.png", io.BytesIO(image_bytes(7, fmt="png"))),
            ("upload-2.jpg", io.BytesIO(image_bytes(8))),
        ],
        roots=[tmp_path],
        labels=["cat"],
    )
    assert report.format == "upload" and report.items_created == 3
    assert (report.referenced, report.stored) == (1, 2)
    assert labels_by_text(db, image_project.id) == {
        str(a): ["dog"],
        "upload-1.png": ["cat"],
        "upload-2.jpg": ["cat"],
    }


def test_listing_that_names_a_file_outside_the_roots_is_refused_whole(
    db: Database, settings: Settings, image_project: Any, tmp_path: Path
) -> None:
    allowed = tmp_path / "allowed"
    fine = write_image(allowed / "fine.jpg", 1)
    secret = write_image(tmp_path / "private" / "secret.jpg", 2)
    link = allowed / "sneaky.jpg"
    link.symlink_to(secret)
    for bad in (str(secret), secret.as_uri(), str(link), "../private/secret.jpg", "/etc/passwd"):
        listing = f"path\n{fine}\n{bad}\n"
        with pytest.raises(Forbidden, match="outside the folders this server may read"):
            import_files(
                db,
                settings,
                image_project.id,
                [("list.csv", io.BytesIO(listing.encode()))],
                roots=[allowed],
                base_dir=allowed,
            )
    with pytest.raises(Forbidden):
        import_files(
            db,
            settings,
            image_project.id,
            [("list.csv", io.BytesIO(f"path\n{fine}\n".encode()))],
            roots=[allowed],
            base_dir=tmp_path,
        )
    with pytest.raises(ImportFailed, match="relative path"):
        import_files(
            db,
            settings,
            image_project.id,
            [("list.csv", io.BytesIO(b"path\nfine.jpg\n"))],
            roots=[allowed],
        )
    assert count(db, Item, image_project.id) == 0
    assert count(db, ImportRecord, image_project.id) == 0
    assert not MediaStore(settings).has_thumbnail("0" * 64)


def test_folder_outside_the_roots_is_refused(
    db: Database, settings: Settings, image_project: Any, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "a.jpg", 1)
    with pytest.raises(Forbidden):
        import_folder(db, settings, image_project.id, photos, roots=api_roots(settings))
    with pytest.raises(Forbidden):
        import_folder(
            db,
            settings,
            image_project.id,
            settings.data_dir / ".." / "photos",
            roots=api_roots(settings),
        )
    assert count(db, Item, image_project.id) == 0


def test_unknown_class_folders_and_labels_refuse_the_import(
    db: Database, settings: Settings, image_project: Any, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "cat" / "a.jpg", 1)
    write_image(photos / "horse" / "b.jpg", 2)
    with pytest.raises(ImportFailed, match="'horse' \\(1 files\\)"):
        import_folder(db, settings, image_project.id, photos, roots=[tmp_path])
    report = import_folder(
        db, settings, image_project.id, photos, roots=[tmp_path], labels_from_folders=False
    )
    assert report.items_created == 2 and report.labels_created == 0

    listing = f"path,label\n{photos / 'cat' / 'a.jpg'},zebra\n"
    with pytest.raises(ImportFailed, match="unknown label 'zebra'"):
        import_files(
            db,
            settings,
            image_project.id,
            [("l.csv", io.BytesIO(listing.encode()))],
            roots=[tmp_path],
        )
    two = f"path,label\n{photos / 'cat' / 'a.jpg'},cat|dog\n"
    with pytest.raises(ImportFailed, match="single-label"):
        import_files(
            db,
            settings,
            image_project.id,
            [("l.csv", io.BytesIO(two.encode()))],
            roots=[tmp_path],
        )


def test_duplicates_within_an_import_and_against_the_project(
    db: Database, settings: Settings, image_project: Any, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "a.jpg", 1)
    write_image(photos / "copy-of-a.jpg", 1)
    write_image(photos / "b.jpg", 2)
    first = import_folder(db, settings, image_project.id, photos, roots=[tmp_path])
    assert (first.items_created, first.duplicates) == (2, 1)
    assert first.duplicate_examples[0].duplicate_of == "file"
    assert first.duplicate_examples[0].first_name == "a.jpg"

    again = import_folder(db, settings, image_project.id, photos, roots=[tmp_path])
    assert (again.items_created, again.duplicates, again.encode_job_id) == (0, 3, None)
    assert {d.duplicate_of for d in again.duplicate_examples} == {"project"}
    assert all(d.item_id is not None for d in again.duplicate_examples)


def test_uploads_are_content_addressed_across_projects(
    db: Database, settings: Settings, make_project: MakeProject
) -> None:
    data = image_bytes(5, fmt="png")
    for name in ("one", "two"):
        project = make_project(("cat", "dog"), kind="image_classification", name=name)
        report = import_files(
            db, settings, project.id, [("x.png", io.BytesIO(data))], roots=api_roots(settings)
        )
        assert report.stored == 1
    files = [p for p in settings.media_dir.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].read_bytes() == data and files[0].suffix == ".png"


def test_kinds_do_not_mix(
    db: Database, settings: Settings, make_project: MakeProject, image_project: Any
) -> None:
    text_project = make_project(("a", "b"))
    with pytest.raises(InvalidInput, match="image-classification project"):
        import_files(
            db,
            settings,
            text_project.id,
            [("x.jpg", io.BytesIO(image_bytes(1)))],
            roots=api_roots(settings),
        )
    with pytest.raises(ImportFailed, match="image project"):
        import_file(db, settings, image_project.id, io.BytesIO(b"text\nhello\n"), filename="t.csv")


def test_real_photos_from_scikit_learn(
    db: Database, settings: Settings, image_project: Any
) -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    folder = Path(sklearn_datasets.__file__).parent / "images"
    photos = sorted(folder.glob("*.jpg"))
    assert len(photos) >= 2
    report = import_folder(db, settings, image_project.id, folder, roots=[folder])
    assert report.items_created == len(photos) and report.skipped == 0
    for item in items_of(db, image_project.id):
        assert item.meta is not None and (item.meta["width"], item.meta["height"]) == (640, 427)
        assert MediaStore(settings).has_thumbnail(item.content_hash)


def test_progress_is_reported_per_image(
    db: Database, settings: Settings, image_project: Any, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    for i in range(3):
        write_image(photos / f"{i}.jpg", i)
    seen: list[tuple[int, int]] = []
    import_folder(
        db,
        settings,
        image_project.id,
        photos,
        roots=[tmp_path],
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_one_image_in_two_class_folders_of_a_multi_label_project_gets_both_classes(
    db: Database, settings: Settings, make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project(("cat", "dog"), kind="image_classification", multi_label=True)
    photos = tmp_path / "photos"
    write_image(photos / "cat" / "both.jpg", 7)
    write_image(photos / "dog" / "both.jpg", 7)  # the same bytes: a photo of a cat and a dog
    write_image(photos / "dog" / "only.jpg", 8)

    report = import_folder(db, settings, project.id, photos, roots=cli_roots(settings, photos))

    assert (report.items_created, report.labels_merged, report.duplicates) == (2, 1, 0)
    assert labels_by_text(db, project.id) == {
        "cat/both.jpg": ["cat", "dog"],
        "dog/only.jpg": ["dog"],
    }
    assert "1 copies merged into one item with all classes" in report.summary()


def test_one_image_in_two_class_folders_of_a_single_label_project_is_a_reported_conflict(
    db: Database, settings: Settings, image_project: Any, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "cat" / "x.jpg", 7)
    write_image(photos / "dog" / "x.jpg", 7)

    report = import_folder(
        db, settings, image_project.id, photos, roots=cli_roots(settings, photos)
    )

    assert (report.items_created, report.labels_merged, report.duplicates) == (1, 0, 1)
    assert labels_by_text(db, image_project.id) == {"cat/x.jpg": ["cat"]}
    (duplicate,) = report.duplicate_examples
    assert (duplicate.name, duplicate.first_name, duplicate.other_label) == (
        "dog/x.jpg",
        "cat/x.jpg",
        True,
    )
    from labella.services.image_import import iter_report_lines

    assert any(
        "with another class (the first one is kept)" in line for line in iter_report_lines(report)
    )
