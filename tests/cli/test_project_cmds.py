"""`labella project create`'s project settings, on a real SQLite data directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from labella.cli.main import app
from labella.config import Settings
from labella.services import projects as project_service
from labella.storage.db import Database


def test_self_training_follows_the_kind_the_flags_and_refuses_what_cannot_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    runner = CliRunner()
    for args in (
        ("plain",),
        ("off", "--no-self-training"),
        ("tags", "--multi-label"),
        ("tags off", "--multi-label", "--no-self-training"),
        ("images on", "--kind", "image_classification", "--self-training"),
    ):
        made = runner.invoke(app, ["project", "create", *args, "--classes", "a,b"])
        assert made.exit_code == 0, made.output
    refused = runner.invoke(
        app,
        ["project", "create", "multi on", "--classes", "a,b", "--multi-label", "--self-training"],
    )
    assert refused.exit_code == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: self_training applies to single-label classification")

    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    db = Database.from_settings(settings)
    try:
        by_name = {p.name: p.self_training for p in project_service.list_projects(db)}
    finally:
        db.dispose()
    assert by_name == {
        "plain": True,
        "off": False,
        "tags": False,
        "tags off": False,
        "images on": True,
    }
