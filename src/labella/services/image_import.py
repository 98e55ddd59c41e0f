"""Import images into an image-classification project.

Sources:

* a **folder** (walked recursively, in name order). With ``labels_from_folders`` (the default),
  an image inside a top-level subfolder takes that subfolder's name as its human label
  (``photos/cat/1.jpg`` -> class ``cat``); images directly in the folder stay unlabeled;
* a **zip archive**, read the same way (a single folder wrapping everything is looked through);
* a **CSV/TSV/JSONL listing** with one image per row: a path (absolute, ``file://`` URI, or
  relative to the listing's folder / ``base_dir``) and optionally a label, an id and other
  columns (kept in the item's ``meta``);
* **uploaded** image files (and zips and listings) through the HTTP API.

Images on disk (folder, listing) are referenced in place and never copied or written to; image
bytes that arrive with the request (uploads, zip members) go to the content-addressed media store.
Thumbnails are made once per content hash.

Where an image may be read from: a path that a client names over HTTP (a server-side folder, a
listing's rows) must lie inside ``settings.import_roots`` or the data dir after symlinks are
resolved, else the whole request is refused with 403 before any file is read; the CLI also
allows its working directory and the folder or listing it is given (:func:`cli_roots`). Files
that a folder walk reaches through a symlink pointing outside the allowed roots are skipped.

Bad input never stops an import: a corrupt or truncated image, an unsupported format, an archive
member whose path leaves the archive (``../``, absolute), a decompression bomb (pixels over
``max_image_pixels``, or a zip member inflating past ``max_image_bytes``), a missing file, a web
address: each is skipped and reported by name. Problems with the request as a whole (unknown
class folders or labels, a malformed listing, a path outside the allowed roots) refuse it before
anything is stored.

The slow part (reading, decoding, thumbnails) runs outside any database transaction; the rows are
then written in one short transaction with the text import's bulk writer, so an import is still
all or nothing in the database and never holds the write lock while decoding photos.
"""

from __future__ import annotations

import io
import os
import stat
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, TypeVar
from urllib.parse import unquote, urlsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labella.config import Settings
from labella.errors import Conflict, ImportFailed, InvalidInput
from labella.images import IMAGE_EXTENSIONS, ImageProblem, decode, supported_formats_text
from labella.services.importing import (
    MAX_EXAMPLES,
    ChunkWriter,
    ClassLookup,
    close_import_record,
    queue_encoding,
)
from labella.services.readers import RecordReader, detect_format
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.media import MediaStore, check_allowed, file_uri, is_within, sha256_hex
from labella.storage.models import ImportRecord, Project, ProjectKind

ProgressCallback = Callable[[int, int], None]
ReportT = TypeVar("ReportT", bound="ImageImportReport")

PATH_CANDIDATES = ("image", "path", "image_path", "file", "filename", "file_name", "uri", "url")
LISTING_FORMATS = ("csv", "tsv", "jsonl")
# Files with these extensions are images in a format Labella does not take: reported by name.
# Anything else in a folder (READMEs, .DS_Store) is ignored and only counted.
OTHER_IMAGE_EXTENSIONS = frozenset(
    {".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".svg", ".ico", ".jp2", ".psd", ".raw"}
)
MAX_SKIPPED_SHOWN = 100
_THUMBNAIL_DRAFT = 512


class _Skip(Exception):
    """One image is skipped; the message says why."""


@dataclass(frozen=True)
class SkippedImage:
    name: str
    reason: str


@dataclass(frozen=True)
class ImageDuplicate:
    name: str
    duplicate_of: str  # "file" (earlier in this import) or "project"
    first_name: str | None = None
    item_id: int | None = None
    other_label: bool = False
    """Single-label project: this copy came with another class than the one kept."""


@dataclass
class ImageImportReport:
    import_id: int
    project_id: int
    source: str
    format: str  # folder, zip, csv, tsv, jsonl, upload
    images_found: int = 0
    items_created: int = 0
    labels_created: int = 0
    duplicates: int = 0
    duplicate_examples: list[ImageDuplicate] = field(default_factory=list)
    labels_merged: int = 0
    """Multi-label project: copies of one image under several class folders (or listing rows)
    that became one item with all their classes."""
    skipped: int = 0
    skipped_examples: list[SkippedImage] = field(default_factory=list)
    other_files: int = 0
    """Files that are not images (by extension) and were ignored."""
    stored: int = 0
    """Images copied into the media store (uploads, zip members)."""
    referenced: int = 0
    """Images referenced in place on disk."""
    thumbnails_made: int = 0
    labels_from: str | None = None
    bytes_read: int = 0
    seconds: float = 0.0
    encode_job_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        parts = [
            f"{self.images_found:,} images found",
            f"{self.items_created:,} items created",
            f"{self.labels_created:,} labels imported",
        ]
        if self.labels_merged:
            parts.append(f"{self.labels_merged:,} copies merged into one item with all classes")
        if self.duplicates:
            parts.append(f"{self.duplicates:,} duplicates skipped")
        if self.skipped:
            parts.append(f"{self.skipped:,} bad images skipped")
        if self.other_files:
            parts.append(f"{self.other_files:,} other files ignored")
        return ", ".join(parts)

    def skip(self, name: str, reason: str) -> None:
        self.skipped += 1
        if len(self.skipped_examples) < MAX_SKIPPED_SHOWN:
            self.skipped_examples.append(SkippedImage(name=name, reason=reason))


@dataclass
class _Candidate:
    """One image to import: where its bytes come from and what the source says about it."""

    name: str
    load: Callable[[int], bytes]  # the bytes, at most the given number (else _Skip)
    path: Path | None = None  # set: referenced in place
    labels: list[str] | None = None
    external_id: str | None = None
    meta: dict[str, Any] | None = None
    line: int = 0
    problem: str | None = None  # known bad before reading (reported, skipped)


@dataclass
class _Row:
    candidate: _Candidate
    digest: str
    media_uri: str
    meta: dict[str, Any]
    class_ids: Sequence[int] | None


# -- allowed roots -------------------------------------------------------------------------------


def api_roots(settings: Settings) -> list[Path]:
    """Where an HTTP client may point the server at images: the data dir and the configured
    import roots."""
    return [settings.data_dir, *settings.import_roots]


def cli_roots(settings: Settings, *given: Path) -> list[Path]:
    """The CLI also reads from its working directory and the folder or listing it is given (the
    person at the terminal can read those anyway)."""
    return [*api_roots(settings), Path.cwd(), *given]


# -- entry points --------------------------------------------------------------------------------


def import_folder(
    db: Database,
    settings: Settings,
    project_id: int,
    folder: Path,
    *,
    roots: Sequence[Path],
    labels_from_folders: bool = True,
    progress: ProgressCallback | None = None,
    actor: str = "system",
) -> ImageImportReport:
    """Import every image under ``folder`` (referenced in place)."""
    folder = allowed_folder(folder, roots)
    project = _image_project(db, project_id)
    found, other = _walk_folder(folder, roots)
    candidates = _label_by_folder(found, project, enabled=labels_from_folders)
    return _run(
        db,
        settings,
        project,
        candidates,
        source=str(folder),
        fmt="folder",
        other_files=other,
        labels_from="subfolders" if labels_from_folders else None,
        progress=progress,
        actor=actor,
    )


def import_files(
    db: Database,
    settings: Settings,
    project_id: int,
    files: Sequence[tuple[str, IO[bytes]]],
    *,
    roots: Sequence[Path],
    base_dir: Path | None = None,
    labels: Sequence[str] | None = None,
    labels_from_folders: bool = True,
    path_field: str | None = None,
    label_field: str | None = None,
    id_field: str | None = None,
    label_separator: str = "|",
    progress: ProgressCallback | None = None,
    actor: str = "system",
) -> ImageImportReport:
    """Import files that arrive as streams (uploads, or files the CLI opens): images (stored in
    the media store), zip archives of images (stored), and CSV/TSV/JSONL listings of image paths
    (referenced in place; relative paths against ``base_dir``, which must lie in ``roots``).

    ``labels`` (class names) are given to every image that gets no label from its source.
    """
    project = _image_project(db, project_id)
    base = check_allowed(base_dir, roots) if base_dir is not None else None
    candidates: list[_Candidate] = []
    kinds: set[str] = set()
    other = 0
    for name, stream in files:
        kind = _file_kind(name, stream)
        kinds.add(kind)
        if kind == "zip":
            found, ignored = _zip_members(name, stream, project)
            candidates += _label_by_folder(found, project, enabled=labels_from_folders)
            other += ignored
        elif kind in LISTING_FORMATS:
            candidates += _listing(
                name,
                stream,
                fmt=kind,
                base=base,
                roots=roots,
                path_field=path_field,
                label_field=label_field,
                id_field=id_field,
                label_separator=label_separator,
            )
        else:
            candidates.append(_upload_candidate(name, stream))
    if labels:
        for candidate in candidates:
            if not candidate.labels:
                candidate.labels = list(labels)
    fmt = next(iter(kinds)) if len(kinds) == 1 else "upload"
    if fmt == "image":
        fmt = "upload"
    shown = files[0][0] if len(files) == 1 else f"{len(files)} files"
    return _run(
        db,
        settings,
        project,
        candidates,
        source=shown,
        fmt=fmt,
        other_files=other,
        labels_from=_labels_from(kinds, labels, label_field, labels_from_folders),
        progress=progress,
        actor=actor,
    )


def _labels_from(
    kinds: set[str], labels: Sequence[str] | None, label_field: str | None, folders: bool
) -> str | None:
    if kinds & set(LISTING_FORMATS):
        return "label column" if label_field else "label column (if any)"
    if "zip" in kinds and folders:
        return "subfolders"
    return "form" if labels else None


# -- candidates from each source -----------------------------------------------------------------


def allowed_folder(folder: Path, roots: Sequence[Path]) -> Path:
    """``folder`` resolved, when it lies in ``roots`` (else Forbidden) and is a folder (else
    InvalidInput)."""
    folder = check_allowed(folder, roots)
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a folder")
    return folder


def walk_files(folder: Path) -> Iterator[Path]:
    """Every file below ``folder``, folder by folder in name order; hidden folders (``.git``)
    are left out and symbolic links to folders are not followed."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in sorted(filenames):
            yield Path(dirpath) / filename


def _walk_folder(folder: Path, roots: Sequence[Path]) -> tuple[list[_Candidate], int]:
    found: list[_Candidate] = []
    other = 0
    for path in walk_files(folder):
        relative = path.relative_to(folder).as_posix()
        suffix = path.suffix.lower()
        if path.name.startswith("."):
            other += 1
            continue
        if suffix in OTHER_IMAGE_EXTENSIONS:
            found.append(
                _Candidate(
                    name=relative,
                    load=_no_bytes,
                    problem=f"unsupported image format {suffix!r}; supported: "
                    f"{supported_formats_text()}",
                )
            )
            continue
        if suffix not in IMAGE_EXTENSIONS:
            other += 1
            continue
        candidate = _Candidate(name=relative, load=_no_bytes, path=path)
        resolved = path.resolve()
        if path.is_symlink() and not any(is_within(resolved, r) for r in roots):
            candidate.problem = "a symbolic link to a file outside the allowed folders"
        else:
            candidate.path = resolved
            candidate.load = _path_loader(resolved)
        found.append(candidate)
    return found, other


def _label_by_folder(
    found: list[_Candidate], project: Project, *, enabled: bool
) -> list[_Candidate]:
    """Give each candidate its top-level folder's name as label (checked against the classes
    before anything is imported)."""
    if not enabled:
        return found
    lookup = ClassLookup(project)
    unknown: dict[str, int] = {}
    for candidate in found:
        parts = PurePosixPath(candidate.name).parts
        if len(parts) < 2 or candidate.problem is not None:
            continue
        folder = parts[0]
        if lookup.find(folder) is None:
            unknown[folder] = unknown.get(folder, 0) + 1
        candidate.labels = [folder]
    if unknown:
        names = ", ".join(f"{name!r} ({n} files)" for name, n in sorted(unknown.items())[:20])
        classes = ", ".join(repr(c.name) for c in project.classes)
        raise ImportFailed(
            f"subfolders that are not classes of project {project.name!r}: {names}. Its classes "
            f"are {classes}; add the classes first, rename the folders, or import with "
            "labels_from_folders off (--no-folder-labels)",
            details={"unknown_folders": sorted(unknown)},
        )
    return found


def _zip_members(name: str, stream: IO[bytes], project: Project) -> tuple[list[_Candidate], int]:
    try:
        archive = zipfile.ZipFile(_seekable(stream))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return [_Candidate(name=name, load=_no_bytes, problem=f"not a readable zip ({exc})")], 0
    members: list[tuple[str, zipfile.ZipInfo, str | None]] = []
    other = 0
    for info in archive.infolist():
        member = info.filename
        if info.is_dir():
            continue
        problem = _unsafe_member(member, info)
        clean = _clean_member_name(member)
        suffix = PurePosixPath(clean).suffix.lower()
        base = PurePosixPath(clean).name
        if problem is None and (base.startswith(".") or clean.startswith("__MACOSX/")):
            other += 1
            continue
        if problem is None and suffix in OTHER_IMAGE_EXTENSIONS:
            problem = f"unsupported image format {suffix!r}; supported: {supported_formats_text()}"
        elif problem is None and suffix not in IMAGE_EXTENSIONS:
            other += 1
            continue
        members.append((clean if problem is None else member, info, problem))
    wrapper = _single_wrapper([m for m, _, p in members if p is None], project)
    found = []
    for member, info, problem in members:
        shown = f"{name}:{member}"
        relative = member[len(wrapper) :] if wrapper and problem is None else member
        if problem is not None:
            found.append(_Candidate(name=shown, load=_no_bytes, problem=problem))
            continue
        candidate = _Candidate(name=relative, load=_zip_loader(archive, info))
        candidate.meta = {"archive": name}
        found.append(candidate)
    return found, other


def _unsafe_member(member: str, info: zipfile.ZipInfo) -> str | None:
    """Why an archive member must not be read, or None."""
    path = member.replace("\\", "/")
    parts = PurePosixPath(path).parts
    if path.startswith("/") or (len(path) > 1 and path[1] == ":") or ".." in parts:
        return "its path leaves the archive's folder (absolute path or '..'); skipped"
    mode = info.external_attr >> 16
    if mode and stat.S_ISLNK(mode):
        return "a symbolic link inside the archive; skipped"
    if info.flag_bits & 0x1:
        return "encrypted in the archive"
    return None


def _clean_member_name(member: str) -> str:
    return "/".join(p for p in member.replace("\\", "/").split("/") if p not in ("", "."))


def _single_wrapper(names: list[str], project: Project) -> str:
    """``photos/`` when every image sits under one top folder that is not itself a class (a
    zipped folder), so that ``photos/cat/1.jpg`` reads as class ``cat``."""
    tops = {PurePosixPath(n).parts[0] for n in names if len(PurePosixPath(n).parts) > 1}
    if len(tops) != 1 or any(len(PurePosixPath(n).parts) < 2 for n in names):
        return ""
    top = tops.pop()
    if ClassLookup(project).find(top) is not None:
        return ""
    return top + "/"


def _listing(
    name: str,
    stream: IO[bytes],
    *,
    fmt: str,
    base: Path | None,
    roots: Sequence[Path],
    path_field: str | None,
    label_field: str | None,
    id_field: str | None,
    label_separator: str,
) -> list[_Candidate]:
    reader = RecordReader(
        io.BufferedReader(_RawReader(stream)),
        fmt=fmt,
        text_field=path_field,
        label_field=label_field,
        id_field=id_field,
        label_separator=label_separator,
        text_candidates=PATH_CANDIDATES,
    )
    found: list[_Candidate] = []
    for record in reader:
        written = record.text.strip()
        candidate = _Candidate(
            name=written or f"{name} line {record.line}",
            load=_no_bytes,
            labels=record.labels,
            external_id=record.external_id,
            meta=record.meta,
            line=record.line,
        )
        found.append(candidate)
        if not written:
            candidate.problem = f"line {record.line} of {name} names no image"
            continue
        path = _listed_path(written, base, record.line, name)
        if path is None:
            candidate.problem = (
                "a web address; Labella never downloads: fetch the images and list their paths"
            )
            continue
        # The security check refuses the whole request, before any listed file is read.
        resolved = check_allowed(path, roots, shown=written)
        candidate.path = resolved
        candidate.load = _path_loader(resolved)
        suffix = resolved.suffix.lower()
        if suffix in OTHER_IMAGE_EXTENSIONS:
            candidate.problem = (
                f"unsupported image format {suffix!r}; supported: {supported_formats_text()}"
            )
    return found


def _listed_path(written: str, base: Path | None, line: int, listing: str) -> Path | None:
    """The path a listing row names (None for a web address)."""
    if "\x00" in written:
        raise ImportFailed(f"line {line} of {listing}: the path contains a NUL character")
    scheme = urlsplit(written).scheme.lower()
    if scheme in ("http", "https", "ftp", "s3", "gs"):
        return None
    if scheme == "file":
        parts = urlsplit(written)
        if parts.netloc not in ("", "localhost"):
            raise ImportFailed(f"line {line} of {listing}: {written!r} is not a local file")
        return Path(unquote(parts.path))
    path = Path(written).expanduser()
    if path.is_absolute():
        return path
    if base is None:
        raise ImportFailed(
            f"line {line} of {listing}: {written!r} is a relative path; give base_dir (the "
            "folder it is relative to) or list absolute paths"
        )
    return base / path


def _upload_candidate(name: str, stream: IO[bytes]) -> _Candidate:
    suffix = PurePosixPath(name).suffix.lower()
    shown = PurePosixPath(name.replace("\\", "/")).name or "upload"
    if suffix in OTHER_IMAGE_EXTENSIONS:
        return _Candidate(
            name=shown,
            load=_no_bytes,
            problem=f"unsupported image format {suffix!r}; supported: {supported_formats_text()}",
        )
    return _Candidate(name=shown, load=_stream_loader(stream))


def _file_kind(name: str, stream: IO[bytes]) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix == ".zip":
        return "zip"
    if suffix in (".csv", ".tsv", ".tab", ".jsonl", ".ndjson"):
        return detect_format(name)
    head = _peek(stream, 4)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    return "image"


# -- loaders -------------------------------------------------------------------------------------


def _no_bytes(_limit: int) -> bytes:
    raise _Skip("nothing to read")


def _path_loader(path: Path) -> Callable[[int], bytes]:
    def load(limit: int) -> bytes:
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                raise _Skip("not a regular file")
            if info.st_size > limit:
                raise _Skip(f"{info.st_size:,} bytes, over the image size limit of {limit:,}")
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise _Skip("no such file") from exc
        except IsADirectoryError as exc:
            raise _Skip("a folder, not an image file") from exc
        except PermissionError as exc:
            raise _Skip("permission denied") from exc
        except OSError as exc:
            raise _Skip(f"cannot be read ({exc.strerror or exc})") from exc

    return load


def _zip_loader(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[int], bytes]:
    def load(limit: int) -> bytes:
        if info.file_size > limit:
            raise _Skip(
                f"inflates to {info.file_size:,} bytes, over the image size limit of {limit:,} "
                "(decompression bomb?)"
            )
        try:
            with archive.open(info) as member:
                # the size in the header can lie: never inflate more than the limit
                data = member.read(limit + 1)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            raise _Skip(f"corrupt in the archive ({exc})") from exc
        except (RuntimeError, NotImplementedError) as exc:  # encrypted, unknown compression
            raise _Skip(f"cannot be extracted ({exc})") from exc
        if len(data) > limit:
            raise _Skip(
                f"inflates past the image size limit of {limit:,} bytes (decompression bomb?)"
            )
        return data

    return load


def _stream_loader(stream: IO[bytes]) -> Callable[[int], bytes]:
    def load(limit: int) -> bytes:
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise _Skip(f"over the image size limit of {limit:,} bytes")
        return data

    return load


class _RawReader(io.RawIOBase):
    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._stream.read(len(view)) or b""
        view[: len(data)] = data
        return len(data)


def _seekable(stream: IO[bytes]) -> IO[bytes]:
    if stream.seekable():
        return stream
    return io.BytesIO(stream.read())


def _peek(stream: IO[bytes], n: int) -> bytes:
    if not stream.seekable():
        return b""
    position = stream.tell()
    head = stream.read(n)
    stream.seek(position)
    return head


# -- the import ----------------------------------------------------------------------------------


def project_of_kind(db: Database, project_id: int, kind: ProjectKind, *, refusal: str) -> Project:
    """The project, detached, when it is of ``kind``; else InvalidInput naming its kind, then
    ``refusal`` (what may be imported into which kind of project)."""
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        session.expunge_all()
    if project.kind != kind:
        raise InvalidInput(
            f"project {project.name!r} is a {project.kind.replace('_', ' ')} project; {refusal}"
        )
    return project


def _image_project(db: Database, project_id: int) -> Project:
    return project_of_kind(
        db,
        project_id,
        ProjectKind.IMAGE_CLASSIFICATION,
        refusal="images can only be imported into an image-classification project",
    )


ExistingItem = Callable[[str], int | None]
"""The id of the project's item with a content hash, None when the project has none: an image
already there is a duplicate."""


def existing_item_lookup(db: Database, project_id: int) -> ExistingItem:
    """Look up one image's content hash in the project by index, in a short read of its own: the
    images are read and thumbnailed with no transaction open, and a small import into a project
    of a million images should not load a million hashes first. An empty project is asked
    nothing (an image that another import adds meanwhile fails the write, which says so)."""
    with db.reader() as session:
        empty = not repo.project_has_items(session, project_id)

    def existing_item(digest: str) -> int | None:
        if empty:
            return None
        with db.reader() as session:
            return repo.item_ids_by_content_hash(session, project_id, [digest]).get(digest)

    return existing_item


def _run(
    db: Database,
    settings: Settings,
    project: Project,
    candidates: list[_Candidate],
    *,
    source: str,
    fmt: str,
    other_files: int,
    labels_from: str | None,
    progress: ProgressCallback | None,
    actor: str,
) -> ImageImportReport:
    started = time.perf_counter()
    lookup = ClassLookup(project)
    # Labels are checked for every row before any image is read: a listing with an unknown
    # label is refused whole, like a text import.
    class_ids: list[Sequence[int] | None] = [
        lookup.resolve(c.labels, c.line or i + 1) if c.labels else None
        for i, c in enumerate(candidates)
    ]
    report = ImageImportReport(import_id=0, project_id=project.id, source=source[-500:], format=fmt)
    report.other_files = other_files
    report.labels_from = labels_from
    report.images_found = len(candidates)
    rows = _prepare(
        settings,
        candidates,
        class_ids,
        existing_item_lookup(db, project.id),
        report,
        progress,
        multi_label=project.multi_label,
    )
    report.seconds = round(time.perf_counter() - started, 3)
    return _write(db, settings, project.id, rows, report, actor=actor)


def _prepare(
    settings: Settings,
    candidates: list[_Candidate],
    class_ids: list[Sequence[int] | None],
    existing: ExistingItem,
    report: ImageImportReport,
    progress: ProgressCallback | None,
    *,
    multi_label: bool = False,
) -> list[_Row]:
    """Read, check, store and thumbnail each image (no transaction open)."""
    store = MediaStore(settings)
    seen: dict[str, _Row] = {}  # digest -> the row of its first image in this import
    rows: list[_Row] = []
    total = len(candidates)
    for done, (candidate, ids) in enumerate(zip(candidates, class_ids, strict=True), start=1):
        try:
            row = _prepare_one(
                settings, store, candidate, ids, existing, seen, report, multi_label=multi_label
            )
        except _Skip as exc:
            report.skip(candidate.name, str(exc))
            row = None
        if row is not None:
            rows.append(row)
        if progress is not None:
            progress(done, total)
    return rows


def _prepare_one(
    settings: Settings,
    store: MediaStore,
    candidate: _Candidate,
    class_ids: Sequence[int] | None,
    existing: ExistingItem,
    seen: dict[str, _Row],
    report: ImageImportReport,
    *,
    multi_label: bool = False,
) -> _Row | None:
    if candidate.problem is not None:
        raise _Skip(candidate.problem)
    data = candidate.load(settings.max_image_bytes)
    report.bytes_read += len(data)
    digest = sha256_hex(data)
    first = seen.get(digest)
    if first is not None and multi_label and class_ids and first.class_ids is not None:
        # One photo in both cat/ and dog/ of a multi-label project means "cat and dog": one
        # item with both classes, not a duplicate that loses a label.
        first.class_ids = sorted({*first.class_ids, *class_ids})
        report.labels_merged += 1
        return None
    existing_id = existing(digest) if first is None else None
    if existing_id is not None or first is not None:
        report.duplicates += 1
        if len(report.duplicate_examples) < MAX_EXAMPLES:
            other_label = (
                first is not None
                and class_ids is not None
                and sorted(class_ids) != sorted(first.class_ids or [])
            )
            report.duplicate_examples.append(
                ImageDuplicate(
                    name=candidate.name,
                    duplicate_of="file" if existing_id is None else "project",
                    first_name=None if first is None else first.candidate.name,
                    item_id=existing_id,
                    other_label=other_label,
                )
            )
        return None
    try:
        info, image = decode(
            data, max_pixels=settings.max_image_pixels, draft_size=_THUMBNAIL_DRAFT
        )
    except ImageProblem as exc:
        raise _Skip(str(exc)) from exc
    if candidate.path is not None:
        media_uri = file_uri(candidate.path)
        report.referenced += 1
    else:
        media_uri = store.put(data, info, digest).media_uri
        report.stored += 1
    if not store.has_thumbnail(digest):
        store.save_thumbnail(digest, image)
        report.thumbnails_made += 1
    meta = {
        **(candidate.meta or {}),
        "source": candidate.name,
        "format": info.format,
        "width": info.width,
        "height": info.height,
        "bytes": len(data),
    }
    row = _Row(candidate, digest, media_uri, meta, class_ids)
    seen[digest] = row
    return row


def _write(
    db: Database,
    settings: Settings,
    project_id: int,
    rows: list[_Row],
    report: ImageImportReport,
    *,
    actor: str,
) -> ImageImportReport:
    return write_rows(
        db,
        settings,
        project_id,
        ((item_values(row, external_id=row.candidate.external_id), row.class_ids) for row in rows),
        report,
        actor=actor,
        then=lambda session: queue_encoding(session, project_id, report),
        conflict=(
            "the project changed while the images were being imported; nothing was imported, "
            "import them again (images already stored are reused)"
        ),
    )


def item_values(row: _Row, *, external_id: str | None) -> dict[str, Any]:
    """The ``item`` columns of a prepared image (its class ids go to :meth:`ChunkWriter.add_item`
    beside them)."""
    return {
        "external_id": external_id,
        "text": row.candidate.name,
        "media_uri": row.media_uri,
        "meta": row.meta,
        "content_hash": row.digest,
    }


def write_rows(
    db: Database,
    settings: Settings,
    project_id: int,
    items: Iterable[tuple[dict[str, Any], Sequence[int] | None]],
    report: ReportT,
    *,
    actor: str,
    then: Callable[[Session], None],
    conflict: str,
) -> ReportT:
    """Write the prepared images (item columns, class ids) of an image import in one
    transaction with its record and audit event; ``then`` adds what the kind of import writes
    after the items, in the same transaction. Conflict(``conflict``) when another writer changed
    the project meanwhile: nothing of the import is kept."""
    started = time.perf_counter()
    try:
        with db.transaction() as session:
            project = repo.get_project(session, project_id, for_update=True)
            record = ImportRecord(
                project_id=project_id, filename=report.source, format=report.format
            )
            session.add(record)
            session.flush()
            report.import_id = record.id
            writer = ChunkWriter(session, settings, project, report)
            for values, class_ids in items:
                writer.add_item(values, class_ids)
            writer.finish()
            then(session)
            report.seconds = round(report.seconds + time.perf_counter() - started, 3)
            close_import_record(
                session,
                record,
                report,
                rows=report.images_found,
                actor=actor,
                detail={"skipped": report.skipped},
            )
            return report
    except IntegrityError as exc:
        raise Conflict(conflict) from exc


def iter_report_lines(report: ImageImportReport, *, shown: int = 5) -> Iterator[str]:
    """The report's problems as lines for a terminal."""
    for skipped in report.skipped_examples[:shown]:
        yield f"  skipped {skipped.name}: {skipped.reason}"
    if report.skipped > shown:
        yield f"  ... and {report.skipped - shown:,} more bad images skipped"
    for duplicate in report.duplicate_examples[:shown]:
        where = (
            f"{duplicate.first_name} of this import"
            if duplicate.duplicate_of == "file"
            else f"item {duplicate.item_id} already in the project"
        )
        conflict = " with another class (the first one is kept)" if duplicate.other_label else ""
        yield f"  duplicate: {duplicate.name} is the same image as {where}{conflict}"
    if report.duplicates > shown:
        yield f"  ... and {report.duplicates - shown:,} more duplicates"
