"""Every ``labella`` command, given junk: one argument or option at a time replaced by a value it
cannot use (no such file, a folder, unreadable bytes, an empty file, absurd numbers, words where a
number goes). The command either accepts it or fails with a message and a non-zero exit, never an
unhandled exception or a traceback. The commands are read from the app itself, so a new one is
swept without being listed; only those that start a long-running server are left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from labella.cli.main import app

# They start a server or a worker that runs until stopped.
LONG_RUNNING = {"serve", "worker", "demo"}
PROJECT = "reviews"
JUNK_WORDS = ("", "abc", "-1", "0", "9" * 30, "1e999", "x" * 5_000)


def commands() -> Iterator[tuple[list[str], Any]]:
    def walk(command: Any, prefix: list[str]) -> Iterator[tuple[list[str], Any]]:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            yield prefix, command
            return
        for name, sub in sorted(subcommands.items()):
            if name not in LONG_RUNNING:
                yield from walk(sub, [*prefix, name])

    yield from walk(typer.main.get_command(app), [])


def is_flag(parameter: Any) -> bool:
    return bool(getattr(parameter, "is_flag", False))


def usable_value(name: str, files: dict[str, Path]) -> str:
    """A value that a required parameter of this name accepts."""
    return {
        "project": PROJECT,
        "file": str(files["csv"]),
        "data": str(files["csv"]),
        "classes": "negative,positive",
        "username": "alice",
        "name": "nightly",
        "token_id": "1",
    }.get(name, "x")


def junk_values(files: dict[str, Path]) -> tuple[str, ...]:
    return (*JUNK_WORDS, str(files["missing"]), str(files["folder"]), str(files["binary"]),
            str(files["empty"]))  # fmt: skip


def invocations(files: dict[str, Path]) -> Iterator[list[str]]:
    """Each command with its required parameters usable and one parameter junk."""
    for path, command in commands():
        parameters = [p for p in command.params if p.name != "help" and not is_flag(p)]
        for junk_parameter in parameters:
            for junk in junk_values(files):
                args = list(path)
                for parameter in parameters:
                    is_argument = not parameter.opts[0].startswith("-")
                    if parameter is junk_parameter:
                        value = junk
                    elif parameter.required:
                        value = usable_value(parameter.name, files)
                    else:
                        continue
                    args += [value] if is_argument else [parameter.opts[0], value]
                yield args


def refused_in_one_line(stderr: str) -> bool:
    """Exit status 1 is labella's own refusal: one ``error:`` line, the last thing written (after
    any progress bars); status 2, a usage error, is the command-line parser's own box."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    return len(errors) == 1 and lines[-1] == errors[0]


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The data directory of an install with a user and a small labelled project, and files of
    every kind of wrong. The working directory is a scratch folder (commands may write there)."""
    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    csv = tmp_path / "reviews.csv"
    csv.write_text("text,label\ngood film,positive\nbad film,negative\nfine film,\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "empty.csv").write_bytes(b"")
    runner = CliRunner()
    for setup in (
        ["project", "create", PROJECT, "--classes", "negative,positive"],
        ["import", PROJECT, str(csv)],
        ["user", "create", "alice", "--password-stdin"],
        ["token", "create", "alice", "--name", "nightly"],
    ):
        result = runner.invoke(app, setup, input="a long enough password")
        assert result.exit_code == 0, (setup, result.output)
    return {
        "csv": csv,
        "missing": tmp_path / "no" / "such.csv",
        "folder": tmp_path / "folder",
        "binary": tmp_path / "binary.csv",
        "empty": tmp_path / "empty.csv",
    }


def test_junk_arguments_fail_with_a_message_never_a_traceback(files: dict[str, Path]) -> None:
    runner = CliRunner()
    failures = []
    for args in invocations(files):
        result = runner.invoke(app, args, input="a long enough password")
        shown = " ".join(a[:40] for a in args)
        unhandled = result.exception is not None and not isinstance(result.exception, SystemExit)
        if unhandled or "Traceback" in result.output:
            failures.append(f"{shown}: {result.exception!r}")
        elif result.exit_code != 0 and not result.output.strip():
            failures.append(f"{shown}: exit {result.exit_code} without a message")
        elif result.exit_code == 1 and not refused_in_one_line(result.stderr):
            failures.append(f"{shown}: not one line on stderr: {result.stderr[-300:]}")
    assert not failures, "\n".join(failures)
