"""`labella import` and `labella export --format voc|coco|yolo|csv` for an object-detection
project, end to end on a real SQLite data directory."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labella.cli.main import app
from labella.services.detection_formats import Annotation, Box, write_voc
from tests.image_files import write_image


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    created = runner.invoke(
        app, ["project", "create", "boxes", "--classes", "cat,dog", "--kind", "object_detection"]
    )
    assert created.exit_code == 0, created.output
    return runner


def test_import_then_export_every_format(cli: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "voc"
    write_image(folder / "JPEGImages" / "a.png", 1, size=(32, 24))
    write_image(folder / "JPEGImages" / "b.png", 2, size=(32, 24))
    (folder / "Annotations").mkdir()
    (folder / "Annotations" / "a.xml").write_bytes(
        write_voc(Annotation("a.png", "a", [Box("dog", 2, 3, 30, 20)], 32, 24))
    )
    (folder / "Annotations" / "b.xml").write_bytes(
        write_voc(Annotation("b.png", "b", [Box("bird", 2, 3, 30, 20)], 32, 24))
    )
    result = cli.invoke(app, ["import", "boxes", str(folder)])
    assert result.exit_code == 0, result.output
    assert "1 boxes, 1 bad annotation files skipped" in result.stdout
    assert "bad annotation Annotations/b.xml: box 1 ('bird'): unknown class" in result.stdout
    for fmt, name in (("voc", "out.zip"), ("yolo", "y.zip"), ("coco", "c.json"), ("csv", "o.csv")):
        result = cli.invoke(app, ["export", "boxes", "--format", fmt, "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert "1 images, 1 boxes" in result.output
    assert json.loads((tmp_path / "c.json").read_text())["annotations"][0]["bbox"] == [2, 3, 28, 17]
    assert (
        "labels/a.txt" in zipfile.ZipFile(io.BytesIO((tmp_path / "y.zip").read_bytes())).namelist()
    )
    # the output name picks coco / csv without --format
    result = cli.invoke(app, ["export", "boxes", "-o", str(tmp_path / "again.json")])
    assert result.exit_code == 0 and (tmp_path / "again.json").exists()


def test_bad_input_is_one_line_and_nonzero(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["export", "boxes", "--format", "pdf", "-o", str(tmp_path / "x")])
    assert result.exit_code != 0 and "unknown export format 'pdf'" in result.output
    assert "Traceback" not in result.output
    result = cli.invoke(app, ["export", "boxes", "-o", str(tmp_path / "x.zip")])
    assert result.exit_code != 0 and "give --format" in result.output
    result = cli.invoke(app, ["import", "boxes", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "does not exist" in result.output
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04junk")
    result = cli.invoke(app, ["import", "boxes", str(junk)])
    assert result.exit_code != 0 and "not a readable zip" in result.output
    assert len(result.output.strip().splitlines()) == 1
