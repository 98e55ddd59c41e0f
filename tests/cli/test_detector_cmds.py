"""`labella train` on an object-detection project trains the detector (job train_detector) and
prints its mAP; with no labeled image it is one line and a nonzero exit. Real SQLite data dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labella.cli.main import app
from tests.learners.shapes import write_shapes_folder


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    monkeypatch.setenv(
        "LABELLA_DETECTOR_PARAMS",
        json.dumps({"input_size": 64, "batch_size": 4, "max_steps": 2, "min_steps": 0}),
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    created = runner.invoke(
        app,
        ["project", "create", "shapes", "--classes", "square,circle", "--kind", "object_detection"],
    )
    assert created.exit_code == 0, created.output
    return runner


def test_train_runs_the_detector_and_prints_map(cli: CliRunner, tmp_path: Path) -> None:
    folder = write_shapes_folder(tmp_path / "voc", 6)
    imported = cli.invoke(app, ["import", "shapes", str(folder)])
    assert imported.exit_code == 0, imported.output
    result = cli.invoke(app, ["train", "shapes"])
    assert result.exit_code == 0, result.output
    assert "detector v1 trained on" in result.output
    assert "mAP@0.5 " in result.output and "AL-picked labels (biased)" in result.output
    assert "AP@0.5" in result.output


def test_train_without_labeled_images_is_one_line(cli: CliRunner) -> None:
    result = cli.invoke(app, ["train", "shapes"])
    assert result.exit_code != 0
    assert "has no labeled images yet" in result.output
    assert "Traceback" not in result.output
