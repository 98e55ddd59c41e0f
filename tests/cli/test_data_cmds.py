"""`labella import` and `labella export` end to end on a real SQLite data directory: exit codes,
the printed report, and one-line errors that name the problem."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from labella.cli.main import app


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    monkeypatch.delenv("LABELLA_MAX_UPLOAD_BYTES", raising=False)
    runner = CliRunner()
    created = runner.invoke(app, ["project", "create", "reviews", "--classes", "negative,positive"])
    assert created.exit_code == 0, created.output
    return runner


def run(cli: CliRunner, *args: str | Path) -> Result:
    return cli.invoke(app, [str(a) for a in args])


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_import_prints_the_report(cli: CliRunner, tmp_path: Path) -> None:
    data = write(
        tmp_path / "reviews.csv",
        "id,text,label\nr1,loved it,positive\nr2,hated it,negative\nr3,so so,\nr4,loved it,\n",
    )
    result = run(cli, "import", "reviews", data)
    assert result.exit_code == 0, result.output
    assert (
        "imported reviews.csv into 'reviews': 4 rows read, 3 items created, 2 labels imported, "
        "1 duplicates skipped" in result.stdout
    )
    assert "text from 'text', labels from 'label', ids from 'id'" in result.stdout
    assert "duplicate: line 5 repeats line 2 of this file" in result.stdout
    assert "encoding the new items: job" in result.stdout
    again = run(cli, "import", "1", data)  # by id this time; everything is a duplicate now
    assert again.exit_code == 0, again.output
    assert "0 items created" in again.stdout and "4 duplicates skipped" in again.stdout
    assert "already in the project" in again.stdout


def test_import_options_headerless_tsv(cli: CliRunner, tmp_path: Path) -> None:
    data = write(tmp_path / "ag.data", "Rain in Spain\tpositive\nA goal\tnegative\n")
    result = run(cli, "import", "reviews", data, "--format", "tsv", "--no-header")
    assert result.exit_code == 0, result.output
    assert "2 items created, 2 labels imported" in result.stdout


def test_import_errors_are_one_line(cli: CliRunner, tmp_path: Path) -> None:
    cases: list[tuple[list[str | Path], str]] = [
        (
            ["reviews", write(tmp_path / "a.csv", "text,label\nfine,neutral\n")],
            "error: line 2: unknown label 'neutral'",
        ),
        (
            ["reviews", write(tmp_path / "b.csv", b"text\ncaf\xe9\n")],
            "error: file is not valid UTF-8 near line 2",
        ),
        (["reviews", write(tmp_path / "c.csv", "")], "error: the file is empty"),
        (
            ["reviews", write(tmp_path / "d.jsonl", '{"text": "a"}\n{oops}\n')],
            "error: line 2 is not valid JSON",
        ),
        (
            [
                "reviews",
                write(tmp_path / "e.csv", "text,label\na,positive\n"),
                "--label-field",
                "tag",
            ],
            "error: missing label column 'tag'; columns found: 'text', 'label'",
        ),
        (["reviews", write(tmp_path / "f.xlsx", "x")], "error: cannot tell the format of 'f.xlsx'"),
        (["reviews", tmp_path / "missing.csv"], "error: file not found"),
        (["nope", write(tmp_path / "g.csv", "text\na\n")], "error: no project named 'nope'"),
    ]
    for args, expected in cases:
        line = error_line(run(cli, "import", *args))
        assert line.startswith(expected), (args, line)
    listed = run(cli, "project", "list")
    assert "0 items" in listed.stdout, listed.stdout  # nothing of the failed imports was kept


def test_import_over_the_size_limit(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELLA_MAX_UPLOAD_BYTES", "100")
    data = write(tmp_path / "big.txt", "a line of text\n" * 20)
    line = error_line(run(cli, "import", "reviews", data))
    assert "over the import limit of 100 bytes" in line


def test_export_to_a_file_and_to_stdout(cli: CliRunner, tmp_path: Path) -> None:
    data = write(
        tmp_path / "reviews.csv", "text,label\nloved it,positive\nhated it,negative\nso so,\n"
    )
    assert run(cli, "import", "reviews", data).exit_code == 0
    out = tmp_path / "out" / "labels.csv"
    out.parent.mkdir()
    result = run(cli, "export", "reviews", "--output", out)
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["text"], r["label"], r["source"]) for r in rows] == [
        ("loved it", "positive", "human"),
        ("hated it", "negative", "human"),
    ]
    assert not (tmp_path / "out" / "labels.csv.part").exists()
    result = run(cli, "export", "reviews", "--format", "jsonl", "--include", "all")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["positive", "negative", None]
    assert "prediction" in rows[0]


def test_export_errors_are_one_line(cli: CliRunner, tmp_path: Path) -> None:
    line = error_line(run(cli, "export", "reviews", "--format", "xml", "--output", tmp_path / "x"))
    assert line == "error: unknown export format 'xml'; choose one of: csv, jsonl"
    assert not (tmp_path / "x").exists()
    line = error_line(run(cli, "export", "nope"))
    assert line.startswith("error: no project named 'nope'")
