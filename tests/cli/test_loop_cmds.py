"""`labella next` and `labella autolabel` on a real SQLite data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from labella.cli.main import app
from labella.config import Settings
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database
from labella.storage.models import Label
from tests.services.labeling_data import add_items, plant_model


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    runner = CliRunner()
    created = runner.invoke(app, ["project", "create", "reviews", "--classes", "negative,positive"])
    assert created.exit_code == 0, created.output
    return runner


@pytest.fixture
def db(cli: CliRunner, tmp_path: Path) -> Iterator[Database]:
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    database = Database.from_settings(settings)
    upgrade_database(database.engine)
    yield database
    database.dispose()


def run(cli: CliRunner, *args: str, answer: str | None = None) -> Result:
    return cli.invoke(app, list(args), input=answer)


def error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def count_labels(db: Database) -> int:
    with db.reader() as session:
        return int(session.scalar(select(func.count()).select_from(Label)) or 0)


def test_next_prints_and_leases_the_batch(cli: CliRunner, db: Database) -> None:
    ids = add_items(db, 1, 5, priorities=[None, 3.0, None, 7.0, None])
    result = run(cli, "next", "reviews", "-n", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].split()[0] == str(ids[3]) and "planted 7.0" in lines[0] and "text 3" in lines[0]
    assert lines[1].split()[0] == str(ids[1])
    assert "random (not yet ranked)" in lines[2]
    # a web annotator does not get the items the CLI holds
    second = run(cli, "next", "1", "-n", "10", "--annotator", "someone else")
    assert len(second.stdout.strip().splitlines()) == 2


def test_next_on_an_empty_project_says_so(cli: CliRunner) -> None:
    result = run(cli, "next", "reviews")
    assert result.exit_code == 0
    assert "nothing left to label in 'reviews'" in result.stdout


def test_autolabel_previews_asks_and_applies(cli: CliRunner, db: Database) -> None:
    ids = add_items(db, 1, 4)
    plant_model(db, 1, {ids[0]: (0.99, 0.01), ids[1]: (0.02, 0.98), ids[2]: (0.5, 0.5)})

    declined = run(cli, "autolabel", "reviews", "--threshold", "0.95", answer="n\n")
    assert "model v1 would label 2 items at threshold 0.95 (negative: 1, positive: 1)" in (
        declined.stdout
    )
    assert error_line(declined) == "error: cancelled; nothing was labeled"
    assert count_labels(db) == 0

    applied = run(cli, "autolabel", "reviews", "--threshold", "0.95", "--yes")
    assert applied.exit_code == 0, applied.output
    assert "labeled 2 items with model v1" in applied.stdout
    assert count_labels(db) == 2

    nothing = run(cli, "autolabel", "reviews", "--threshold", "0.95", "--yes")
    assert nothing.exit_code == 0 and "would label 0 items" in nothing.stdout


def test_loop_command_errors_are_one_line(cli: CliRunner, db: Database) -> None:
    add_items(db, 1, 2)
    cases = [
        (("next", "nosuch"), "error: no project named 'nosuch'"),
        (("next", "reviews", "-n", "0"), "error: batch size must be between 1 and 500, got 0"),
        (("next", "reviews", "--annotator", " "), "error: annotator must not be empty"),
        (("autolabel", "reviews", "--yes"), "error: project 'reviews' has no trained model yet"),
        (("autolabel", "42", "--yes"), "error: project 42 does not exist"),
    ]
    for args, message in cases:
        assert error_line(run(cli, *args)).startswith(message), args
    plant_model(db, 1, {})
    assert "threshold must be in (0, 1]" in error_line(
        run(cli, "autolabel", "reviews", "--threshold", "1.5", "--yes")
    )
    assert count_labels(db) == 0
