"""`labella autolabel-boxes` on a real SQLite data directory: the preview's numbers, the
confirmation, and one readable line with a non-zero exit for bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from labella.cli.main import app
from labella.config import Settings
from labella.services import projects
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database
from labella.storage.models import Label, LabelBox
from tests.services.detection_data import label_boxes, plant_detector
from tests.services.labeling_data import add_items

CELL = ("cell", 10.0, 10.0, 50.0, 50.0)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    return CliRunner()


@pytest.fixture
def db(cli: CliRunner, tmp_path: Path) -> Iterator[Database]:
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    settings.ensure_dirs()
    database = Database.from_settings(settings)
    upgrade_database(database.engine)
    yield database
    database.dispose()


def run(cli: CliRunner, *args: str, answer: str | None = None) -> Result:
    return cli.invoke(app, ["autolabel-boxes", *args], input=answer)


def test_preview_confirm_and_apply(cli: CliRunner, db: Database) -> None:
    project = projects.create_project(
        db,
        projects.ProjectSpec(
            name="cells",
            kind="object_detection",
            classes=[projects.ClassSpec(name="cell"), projects.ClassSpec(name="platelet")],
        ),
    )
    evals = add_items(db, project.id, 4, embedded=False, prefix="eval")
    pool = add_items(db, project.id, 3, embedded=False, prefix="pool")
    for item in evals:
        label_boxes(db, project.id, item, [CELL], eval_sample=True)
    plant_detector(
        db,
        project.id,
        {
            **{item: [(*CELL, 0.9)] for item in evals},
            pool[0]: [(*CELL, 0.95)],
            pool[1]: [(*CELL, 0.5)],
            pool[2]: [],
        },
    )
    shown = run(cli, "cells", "--target-precision", "0.9", answer="n\n")
    assert shown.exit_code == 1 and "cancelled; nothing was labeled" in shown.output
    assert "would label 2 images (1 boxes, 1 empty) whose every box scores 0.90 or more" in (
        shown.output
    )
    assert "box precision 100.0% (95% interval" in shown.output and "n=4)" in shown.output
    applied = run(cli, "cells", "--target-precision", "0.9", "--yes")
    assert applied.exit_code == 0, applied.output
    assert "labeled 2 images (1 boxes) with model v1" in applied.output
    with db.reader() as session:
        assert session.scalar(select(func.count()).select_from(LabelBox)) == 4 + 1
        assert session.scalar(select(func.count()).where(Label.source == "model")) == 2


def test_bad_input_is_one_line_and_a_nonzero_exit(cli: CliRunner, db: Database) -> None:
    created = cli.invoke(app, ["project", "create", "texts", "--classes", "a,b"])
    assert created.exit_code == 0, created.output
    for args, message in [
        (["texts", "--target-precision", "1.5"], "target_precision must be in (0, 1)"),
        (["texts"], "box auto-labeling is for object-detection projects"),
        (["nowhere"], "nowhere"),
    ]:
        result = run(cli, *args)
        assert result.exit_code != 0
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
