"""`labella project create --kind image_classification` and `labella import` of a folder, a zip
and a listing of images, end to end on a real SQLite data directory."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labella.cli.main import app
from tests.image_files import corrupt_bytes, image_bytes, write_image


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    created = runner.invoke(
        app,
        ["project", "create", "pets", "--classes", "cat,dog", "--kind", "image_classification"],
    )
    assert created.exit_code == 0, created.output
    return runner


def test_import_a_folder_a_zip_and_a_listing(cli: CliRunner, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "cat" / "a.jpg", 1)
    write_image(photos / "dog" / "b.png", 2)
    (photos / "dog" / "bad.jpg").write_bytes(corrupt_bytes())
    result = cli.invoke(app, ["import", "pets", str(photos)])
    assert result.exit_code == 0, result.output
    assert "3 images found, 2 items created, 2 labels imported, 1 bad images skipped" in (
        result.stdout
    )
    assert "skipped dog/bad.jpg: not an image" in result.stdout
    assert (
        "2 referenced in place" in result.stdout and "encoding the new items: job" in result.stdout
    )

    archive = tmp_path / "more.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("cat/c.webp", image_bytes(3, fmt="webp"))
        zf.writestr("../x.jpg", image_bytes(4))
    archive.write_bytes(buffer.getvalue())
    result = cli.invoke(app, ["import", "pets", str(archive)])
    assert result.exit_code == 0, result.output
    assert "1 items created" in result.stdout and "leaves the archive" in result.stdout

    write_image(tmp_path / "list" / "d.jpg", 5)
    listing = tmp_path / "list" / "images.csv"
    listing.write_text("path,label\nd.jpg,dog\n")
    result = cli.invoke(app, ["import", "pets", str(listing)])
    assert result.exit_code == 0, result.output
    assert "1 items created, 1 labels imported" in result.stdout


def test_import_errors_are_one_line(cli: CliRunner, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "horse" / "a.jpg", 1)
    result = cli.invoke(app, ["import", "pets", str(photos)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "'horse'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    missing = cli.invoke(app, ["import", "pets", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "does not exist" in missing.stderr
    wrong = cli.invoke(
        app,
        [
            "project",
            "create",
            "x",
            "--classes",
            "a,b",
            "--kind",
            "image_classification",
            "--encoder",
            "all-MiniLM-L6-v2",
        ],
    )
    assert wrong.exit_code == 1 and "unknown image encoder" in wrong.stderr
