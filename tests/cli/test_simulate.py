"""`labella simulate` end to end: a tiny real TSV, the real MiniLM encoder, files on disk."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labella.cli.main import app
from labella.learners.cache import EmbeddingCache
from labella.learners.encoders import MINILM_NAME
from labella.services.importing import content_hash

SPORT = [
    "The striker scored twice in the second half.",
    "Our goalkeeper saved a penalty in extra time.",
    "The home team won the championship final.",
    "She broke the world record in the 100 metres.",
    "The coach was sacked after five straight defeats.",
    "He served three aces to win the tennis match.",
    "The referee showed a red card to the defender.",
    "The marathon runners crossed the finish line at noon.",
    "Fans cheered as the batter hit a home run.",
    "The cyclist attacked on the final mountain climb.",
    "The quarterback threw a touchdown pass in overtime.",
    "Both teams were level at half time.",
    "The swimmer took gold in the butterfly race.",
    "The club signed a new midfielder for the season.",
    "The boxer won by knockout in the third round.",
    "The golfer sank a long putt on the last hole.",
    "Our rugby side lost the derby by a single point.",
    "The sprinter false-started and was disqualified.",
    "The league title was decided on goal difference.",
    "The basketball player scored forty points tonight.",
    "The skier crashed on the downhill course.",
    "The captain lifted the trophy in front of the fans.",
    "The cricket match was stopped because of rain.",
    "He trained every morning before the big fight.",
]
COOKING = [
    "Knead the dough for ten minutes until smooth.",
    "Simmer the tomato sauce with garlic and basil.",
    "Preheat the oven before you bake the cake.",
    "Whisk the eggs with sugar until pale and fluffy.",
    "Season the soup with salt and black pepper.",
    "Fry the onions slowly until they caramelise.",
    "Roast the chicken with lemon and rosemary.",
    "Chop the carrots and add them to the stew.",
    "Let the bread rise in a warm place for an hour.",
    "Melt the butter and stir in the flour.",
    "Grill the fish for three minutes on each side.",
    "Boil the pasta in plenty of salted water.",
    "Marinate the beef overnight in soy sauce.",
    "Sprinkle grated cheese over the baked potatoes.",
    "Steam the rice and keep it covered.",
    "Blend the berries with yoghurt for a smoothie.",
    "Toast the spices in a dry pan before grinding.",
    "Fold the whipped cream gently into the mousse.",
    "Slice the mushrooms and saute them in olive oil.",
    "Cool the cookies on a rack before serving.",
    "Stir the risotto often and add stock slowly.",
    "Peel the apples and bake them into a pie.",
    "Drizzle honey over the warm pancakes.",
    "Cover the pot and let the beans cook slowly.",
]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def topics_tsv(tmp_path: Path) -> Path:
    path = tmp_path / "topics.tsv"
    rows = [f"{text}\tsport" for text in SPORT] + [f"{text}\tcooking" for text in COOKING]
    # interleave so neither class sits in one block of the file
    rows = rows[::2] + rows[1::2]
    path.write_text("text\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def run(runner: CliRunner, *args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_simulate_writes_table_and_plots(
    runner: CliRunner, topics_tsv: Path, tmp_path: Path, embedding_cache_dir: Path
) -> None:
    out = tmp_path / "sim"
    code, output = run(
        runner,
        "simulate",
        topics_tsv,
        "--strategies",
        "margin,random,cluster_margin",
        "--seeds",
        "0,1",
        "--budget",
        "24",
        "--batch",
        "4",
        "--initial",
        "4",
        "--out",
        out,
        "--cache-dir",
        embedding_cache_dir,
    )
    assert code == 0, output
    for name in ("results.csv", "results.md", "curves.png", "curves.svg"):
        assert (out / name).stat().st_size > 0, name
    with (out / "results.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [row["strategy"] for row in rows] == ["margin", "random", "cluster_margin"]
    # two topics this far apart are learned from the whole pool
    assert float(rows[0]["full_pool_accuracy"]) >= 0.9
    assert float(rows[0]["accuracy_at_budget_mean"]) >= 0.8
    assert "| margin |" in (out / "results.md").read_text()
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "Simulation results" in output and "cluster_margin" in output
    # every text now sits in the shared embedding cache: a second simulation encodes nothing
    with EmbeddingCache(embedding_cache_dir, MINILM_NAME, 384) as cache:
        assert cache.missing([content_hash(t) for t in SPORT + COOKING]) == []


def test_simulate_on_a_class_folder_with_a_test_file(
    runner: CliRunner, tmp_path: Path, embedding_cache_dir: Path
) -> None:
    folder = tmp_path / "docs"
    for label, texts in (("sport", SPORT[:16]), ("cooking", COOKING[:16])):
        (folder / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / label / f"{i:02d}.txt").write_text(text, encoding="utf-8")
    test = tmp_path / "test.jsonl"
    test.write_text(
        "\n".join(
            [f'{{"text": "{t}", "label": "sport"}}' for t in SPORT[16:]]
            + [f'{{"text": "{t}", "label": "cooking"}}' for t in COOKING[16:]]
        ),
        encoding="utf-8",
    )
    out = tmp_path / "sim"
    code, output = run(
        runner,
        "simulate",
        folder,
        "--test",
        test,
        "--strategies",
        "margin,random",
        "--seeds",
        "3",
        "--budget",
        "12",
        "--batch",
        "4",
        "--initial",
        "4",
        "--cold-start",
        "random",
        "--self-training",
        "--out",
        out,
        "--cache-dir",
        embedding_cache_dir,
    )
    assert code == 0, output
    markdown = (out / "results.md").read_text()
    assert "32 pool items, 16 test items (test set), 2 classes" in markdown
    assert "linear head, self-trained on the unlabeled pool" in markdown
    assert (out / "curves.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategies", "margin,smart"], "unknown strategy 'smart'; known strategies: "),
        (["--budget", "10", "--initial", "20"], "budget (10) must be at least the initial"),
        (["--seeds", "0,x"], "--seeds must be comma-separated integers"),
        (["--cold-start", "margin"], "unknown cold start 'margin'"),
        (["--head", "forest"], "unknown head kind 'forest'"),
        (["--strategies", "bald"], "strategy 'bald' cannot be simulated"),
        (["--cache-dir", "{file}"], "--cache-dir {file} is a file; give a folder"),
    ],
)
def test_bad_options_fail_with_one_line(
    runner: CliRunner, topics_tsv: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    args = [a.replace("{file}", str(a_file)) for a in args]
    message = message.replace("{file}", str(a_file))
    code, output = run(runner, "simulate", topics_tsv, "--out", tmp_path / "o", *args)
    assert code == 1
    assert output.strip().count("\n") == 0, output
    assert message in output
    if "known strategies" in message:
        assert "cluster_margin" in output and "random" in output
    assert not (tmp_path / "o").exists()


def test_bad_data_fails_with_one_line(runner: CliRunner, tmp_path: Path) -> None:
    unlabeled = tmp_path / "unlabeled.csv"
    unlabeled.write_text("text\n" + "\n".join(SPORT) + "\n", encoding="utf-8")
    one_class = tmp_path / "one_class.csv"
    one_class.write_text("text,label\n" + "".join(f"{t},sport\n" for t in SPORT[:5]))
    one_each = tmp_path / "one_each.csv"
    one_each.write_text(f"text,label\n{SPORT[0]},sport\n{COOKING[0]},cooking\n")
    cases = [
        # refused before the texts are encoded (the one line is the whole output)
        (one_each, "too few labeled items to hold out a test set"),
        (unlabeled, "unlabeled.csv has no label column"),
        (one_class, "one_class.csv has labels of only one class ('sport')"),
        (tmp_path / "missing.tsv", "file not found"),
        (tmp_path, "has no class subfolders"),
    ]
    for path, message in cases:
        code, output = run(runner, "simulate", path, "--out", tmp_path / "o")
        assert code == 1, (path, output)
        assert output.strip().count("\n") == 0, output
        assert message in output, output
