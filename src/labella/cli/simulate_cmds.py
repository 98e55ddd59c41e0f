"""`labella simulate`: compare query strategies on data that already has labels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from labella.cli.main import app, fail, friendly_errors

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from labella.services.simulation import LabeledTexts, SimulationResult


def parse_names(value: str, *, option: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        fail(f"{option} needs at least one name (comma-separated)")
    return names


def parse_seeds(value: str) -> list[int]:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    try:
        seeds = [int(part) for part in parts]
    except ValueError:
        fail(f"--seeds must be comma-separated integers, got {value!r}")
        raise  # unreachable: fail() exits
    if not seeds:
        fail("--seeds needs at least one integer")
    return seeds


@app.command()
@friendly_errors
def simulate(
    data: Annotated[
        Path,
        typer.Argument(
            help="Labeled CSV/TSV/JSONL file, or a folder with one subfolder of .txt files per "
            "class (one item per file)",
            show_default=False,
        ),
    ],
    strategies: Annotated[
        str, typer.Option(help="Comma-separated query strategies to compare")
    ] = "margin,cluster_margin,random",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; one run per seed")] = "0,1,2",
    budget: Annotated[int, typer.Option(help="Labels to spend per run")] = 500,
    batch: Annotated[int, typer.Option(help="Labels per query")] = 20,
    initial: Annotated[int, typer.Option(help="Seed-set size, chosen without a model")] = 20,
    test: Annotated[
        Path | None,
        typer.Option(help="Labeled test file; without it 20% of DATA is held out, stratified"),
    ] = None,
    text_field: Annotated[str | None, typer.Option(help="Column/field holding the text")] = None,
    label_field: Annotated[str | None, typer.Option(help="Column/field holding the label")] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, tsv or jsonl (default: from the file extension)"),
    ] = None,
    no_header: Annotated[
        bool, typer.Option("--no-header", help="CSV/TSV files have no header row")
    ] = False,
    head: Annotated[str, typer.Option(help="Classifier head: linear or mlp")] = "linear",
    cold_start: Annotated[
        str, typer.Option(help="How the seed set is chosen: kmeans_cold_start or random")
    ] = "kmeans_cold_start",
    clusters: Annotated[
        int | None,
        typer.Option(help="k-means clusters for cluster-aware strategies (default: as projects)"),
    ] = None,
    self_training: Annotated[
        bool,
        typer.Option(
            "--self-training/--no-self-training",
            help="Replay a project's self-training: each model also learns from its confident "
            "predictions on the unlabeled pool (as new single-label projects train; several "
            "times slower per step)",
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="Folder for the results")] = Path("simulation"),
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Embedding cache folder (default: the server's embedding cache)"),
    ] = None,
) -> None:
    """Replay active learning with an oracle on labeled data and compare query strategies.

    Writes OUT/results.csv, OUT/results.md (the table), OUT/curves.png and OUT/curves.svg.
    """
    from rich.console import Console

    from labella.config import Settings
    from labella.errors import InvalidInput
    from labella.services import simulation as sim

    # Everything that can be refused is checked before minutes of encoding.
    specs = sim.resolve_strategies(parse_names(strategies, option="--strategies"))
    seed_list = sim.check_seeds(parse_seeds(seeds))
    sim.check_sizes(initial=initial, batch=batch, budget=budget)
    if cold_start not in sim.COLD_STARTS:
        raise InvalidInput(
            f"unknown cold start {cold_start!r}; choose one of {', '.join(sim.COLD_STARTS)}"
        )
    sim.check_head(head)
    if clusters is not None and clusters < 1:
        raise InvalidInput(f"--clusters must be a positive integer, got {clusters}")
    for option, folder in (("--out", out), ("--cache-dir", cache_dir)):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise InvalidInput(f"{option} {folder} is a file; give a folder")
    _require_matplotlib()

    has_header = not no_header
    pool = sim.load_labeled_texts(
        data, text_field=text_field, label_field=label_field, has_header=has_header, fmt=fmt
    )
    if len(pool.classes) < 2:
        raise InvalidInput(
            f"{data.name} has labels of only one class ({pool.classes[0]!r}); a simulation "
            "needs at least 2 classes"
        )
    test_set = None
    if test is None:
        sim.check_can_hold_out(pool.labels)
    else:
        test_set = sim.load_labeled_texts(
            test,
            text_field=text_field,
            label_field=label_field,
            has_header=has_header,
            fmt=fmt,
            classes=pool.classes,
        )
    settings = Settings()
    console = Console()
    err_console = Console(stderr=True)
    err_console.print(_loaded_line(pool, test_set))
    texts = pool.texts + (test_set.texts if test_set is not None else [])
    with _progress_bar(err_console) as progress:
        encoding = progress.add_task("encoding", total=len(texts))
        vectors = sim.embed_texts(
            texts,
            cache_dir=cache_dir or settings.embeddings_dir,
            encoder_name=settings.text_encoder,
            batch_size=settings.encode_batch_size,
            chunk=settings.encode_chunk,
            progress=lambda done, total: progress.update(encoding, completed=done, total=total),
        )
        stepping = progress.add_task("simulating", total=None)
        result = sim.simulate(
            vectors[: len(pool)],
            pool.labels,
            vectors[len(pool) :] if test_set is not None else None,
            test_set.labels if test_set is not None else None,
            strategies=specs,
            seeds=seed_list,
            n_classes=len(pool.classes),
            initial=initial,
            batch=batch,
            budget=budget,
            head=head,
            cold_start=cold_start,
            n_clusters=clusters,
            progress=lambda done, total: progress.update(stepping, completed=done, total=total),
            self_training=self_training,
        )
    files = sim.write_report(result, out, title=f"Simulation on {data.name}")
    _print_table(console, result)
    console.print(f"wrote {files.csv}, {files.markdown}, {files.png}, {files.svg}")


def _require_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        fail("the learning-curve plot needs matplotlib; install it with `pip install matplotlib`")


def _loaded_line(pool: LabeledTexts, test_set: LabeledTexts | None) -> str:
    parts = [f"{len(pool):,} labeled items in {len(pool.classes)} classes"]
    if pool.skipped_unlabeled:
        parts.append(f"{pool.skipped_unlabeled:,} unlabeled rows skipped")
    if pool.skipped_duplicates:
        parts.append(f"{pool.skipped_duplicates:,} duplicates skipped")
    if test_set is not None:
        parts.append(f"test set of {len(test_set):,}")
    return "; ".join(parts)


def _progress_bar(console: Console) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _print_table(console: Console, result: SimulationResult) -> None:
    from rich.table import Table

    from labella.services.simulation import describe, summary_table

    header, rows = summary_table(result)
    table = Table(title="Simulation results", caption=describe(result), caption_justify="left")
    longest = max(len(row[0]) for row in rows)
    table.add_column(header[0], no_wrap=True, min_width=longest)
    for name in header[1:]:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
