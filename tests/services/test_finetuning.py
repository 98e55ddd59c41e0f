"""The finetune_encoder job end to end on a tiny text project: the real MiniLM is fine-tuned (a
couple of optimiser steps), the project switches to it, its items are re-encoded under the new
encoder's own cache namespace and a model is trained on those vectors; and the bad cases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from labella.config import Settings
from labella.errors import InvalidInput, NotReady
from labella.jobs.worker import Worker
from labella.learners.cache import EmbeddingCache
from labella.learners.encoders import MINILM_NAME
from labella.services import encoding, finetuning, labeling, ranking, training
from labella.services.importing import content_hash
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import AuditEvent, Item, Job, JobStatus, ModelVersion, Prediction

SPORT = [
    "The striker scored twice in the second half.",
    "Our team won the championship final last night.",
    "The goalkeeper saved a penalty in extra time.",
    "She ran the marathon in under three hours.",
    "The coach was sacked after five straight defeats.",
    "He hit a home run in the ninth inning.",
    "The tennis match went to a fifth set tiebreak.",
    "The referee showed him a red card for the tackle.",
    "The swimmer broke the world record in the relay.",
    "Fans cheered as the home side equalised late.",
]
COOKING = [
    "Simmer the tomato sauce for twenty minutes.",
    "Whisk the eggs with sugar until pale and fluffy.",
    "Knead the bread dough and let it rise overnight.",
    "Season the steak with salt before searing it.",
    "Chop the onions finely and fry them in butter.",
    "Bake the cake at 180 degrees for forty minutes.",
    "Add a pinch of cumin to the lentil soup.",
    "Roast the vegetables with olive oil and garlic.",
    "Let the pastry chill in the fridge before rolling.",
    "Grate some parmesan over the pasta before serving.",
]
# A couple of optimiser steps: the test checks the plumbing, the learner's tests its quality.
TINY = {"n_iterations": 1, "epochs": 1, "batch_size": 16, "max_pairs": 32}


class Corpus:
    def __init__(self, db: Database, project: Any) -> None:
        self.db = db
        self.id = project.id
        self.name = project.name
        self.items: dict[str, list[int]] = {"sport": [], "cooking": []}
        with db.transaction() as session:
            for topic, texts in (("sport", SPORT), ("cooking", COOKING)):
                for text in texts:
                    item = Item(
                        project_id=project.id,
                        text=text,
                        content_hash=content_hash(text),
                        random_key=len(self.items["sport"]) / 100 + len(texts) / 1000,
                    )
                    session.add(item)
                    session.flush()
                    self.items[topic].append(item.id)

    def label(self, per_class: int) -> None:
        for topic, ids in self.items.items():
            for item_id in ids[:per_class]:
                labeling.submit_label(self.db, self.id, item_id, classes=[topic], annotator="t")


@pytest.fixture
def corpus(db: Database, worker: Worker, make_project: Callable[..., Any]) -> Callable[..., Corpus]:
    def factory(*, per_class: int = 8, **overrides: Any) -> Corpus:
        overrides.setdefault("retrain_every", 1000)
        overrides.setdefault("online_update_every", 0)
        made = Corpus(db, make_project(("sport", "cooking"), **overrides))
        encoding.request_encoding(db, made.id)
        worker.run_until_idle()
        made.label(per_class)
        return made

    return factory


def job_of(db: Database, job_id: int) -> Job:
    with db.reader() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def versions(db: Database, project_id: int) -> list[ModelVersion]:
    with db.reader() as session:
        return list(
            session.scalars(
                select(ModelVersion)
                .where(ModelVersion.project_id == project_id)
                .order_by(ModelVersion.version)
            )
        )


def item_keys(db: Database, project_id: int) -> list[str]:
    with db.reader() as session:
        return list(
            session.scalars(
                select(Item.content_hash).where(Item.project_id == project_id).order_by(Item.id)
            )
        )


def audit_actions(db: Database, project_id: int) -> list[tuple[str, dict[str, Any]]]:
    with db.reader() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.project_id == project_id).order_by(AuditEvent.id)
        )
        return [(e.action, dict(e.detail or {})) for e in events]


def stored_state(db: Database, settings: Settings, project_id: int) -> dict[str, Any]:
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        return {
            "encoder": project.encoder,
            "embedded": repo.count_embedded(session, project_id),
            "versions": len(versions(db, project_id)),
            "models": sorted(p.name for p in (settings.models_dir).rglob("encoder-*")),
        }


def test_finetune_switches_the_encoder_and_trains_on_the_fine_tuned_vectors(
    db: Database, settings: Settings, worker: Worker, corpus: Callable[..., Corpus]
) -> None:
    tiny = corpus()
    base_job = training.request_training(db, tiny.id)
    worker.run_until_idle()
    assert job_of(db, base_job.id).status == JobStatus.SUCCEEDED
    keys = item_keys(db, tiny.id)
    with EmbeddingCache(settings.embeddings_dir, MINILM_NAME, 384) as cache:
        base_vectors, found = cache.get_many(keys)
    assert found.all()

    job = finetuning.request_finetune(db, settings, tiny.id, params=TINY, actor="alice")
    assert job.kind == finetuning.FINETUNE_JOB
    # asking again while it is queued gives the same job, not a second fine-tuning
    assert finetuning.request_finetune(db, settings, tiny.id, params=TINY).id == job.id
    assert worker.run_once()  # the fine-tuning only; the training it queues waits

    # until that training, v1's head (fitted on MiniLM's vectors) must not score the new
    # vectors: the queue is ranked cold-start meanwhile
    v1 = versions(db, tiny.id)[0]
    assert ranking.rank_project(db, settings, tiny.id).cold_start
    assert ranking.rank_project(db, settings, tiny.id, model_version=v1).cold_start
    worker.run_until_idle()

    done = job_of(db, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    result = done.result or {}
    name = result["encoder"]
    assert finetuning.parse_encoder_name(name) == (tiny.id, job.id)
    assert result["previous_encoder"] == MINILM_NAME
    assert result["n_labels"] == 16 and result["n_pairs"] == 32
    # pair settings without a method ask for SetFit
    assert result["method"] == "setfit" and name.startswith("finetuned-text:")
    assert result["n_items"] == len(SPORT) + len(COOKING)
    assert "fine-tuned all-MiniLM-L6-v2 on 16 labels" in done.message
    assert done.progress_done == done.progress_total == 100

    # the project uses it; every item has a vector under the new namespace, and they differ
    # from MiniLM's, which are still there, unchanged, under MiniLM's name
    state = stored_state(db, settings, tiny.id)
    assert state["encoder"] == name and state["embedded"] == len(keys)
    saved = finetuning.encoder_dir(settings, tiny.id, job.id)
    assert (saved / "learner.json").is_file()
    assert json.loads((saved / "labella-encoder.json").read_text())["name"] == name
    with EmbeddingCache(settings.embeddings_dir, name, 384) as cache:
        tuned, found = cache.get_many(keys)
    assert found.all()
    assert not np.allclose(tuned, base_vectors, atol=1e-3)
    with EmbeddingCache(settings.embeddings_dir, MINILM_NAME, 384) as cache:
        again, _ = cache.get_many(keys)
    np.testing.assert_array_equal(again, base_vectors)

    # the training it queued made v2 on the fine-tuned vectors, and it predicted with it
    v1, v2 = versions(db, tiny.id)
    assert v1.encoder == MINILM_NAME and v1.metrics["encoder"] == MINILM_NAME
    assert v2.encoder == name and v2.metrics["encoder"] == name
    assert v2.metrics["fine_tuned_encoder"]["job_id"] == job.id
    assert v2.metrics["fine_tuned_encoder"]["n_pairs"] == 32
    assert v2.metrics["fine_tuned_encoder"]["method"] == "setfit"
    with db.reader() as session:
        model_ids = set(
            session.scalars(
                select(Prediction.model_version_id).where(Prediction.project_id == tiny.id)
            )
        )
    assert model_ids == {v2.id}

    actions = dict(audit_actions(db, tiny.id))
    assert actions["finetune.request"]["job_id"] == job.id
    assert actions["encoder.finetune"]["from"] == MINILM_NAME
    assert actions["encoder.finetune"]["to"] == name
    assert actions["encoder.finetune"]["n_pairs"] == 32

    # back to the base encoder: its vectors are all cached, so a training follows at once
    finetuning.switch_encoder(db, settings, tiny.id, MINILM_NAME, actor="alice")
    worker.run_until_idle()
    assert stored_state(db, settings, tiny.id)["encoder"] == MINILM_NAME
    v3 = versions(db, tiny.id)[-1]
    assert v3.version == 3 and v3.encoder == MINILM_NAME
    assert ("project.encoder", {"from": name, "to": MINILM_NAME}) in audit_actions(db, tiny.id)
    # ... and to the fine-tuned one again: its vectors are cached too
    finetuning.switch_encoder(db, settings, tiny.id, name)
    worker.run_until_idle()
    assert versions(db, tiny.id)[-1].encoder == name
    with db.reader() as session:
        failed = session.scalar(
            select(func.count()).where(Job.project_id == tiny.id, Job.status == JobStatus.FAILED)
        )
    assert failed == 0


def test_the_default_method_fine_tunes_the_encoder_as_a_classifier(
    db: Database, settings: Settings, worker: Worker, corpus: Callable[..., Corpus]
) -> None:
    from labella.learners.finetune import ClassifierFineTuner, TextFineTuner

    tiny = corpus()
    job = finetuning.request_finetune(db, settings, tiny.id, params={"epochs": 2})
    assert job_of(db, job.id).params["method"] == "classifier"
    assert job_of(db, job.id).params["members"] == 2  # the default: two copies side by side
    worker.run_until_idle()
    done = job_of(db, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    result = done.result or {}
    assert result["method"] == "classifier" and result["n_pairs"] == 0 and result["epochs"] == 2
    assert result["encoder"].startswith(f"finetuned-text:project-{tiny.id}:v{job.id}-")
    assert "on 16 labels (end to end as a classifier, 2 copies side by side, 2 epoch(s)" in (
        done.message
    )
    saved = TextFineTuner.load(finetuning.encoder_dir(settings, tiny.id, job.id))
    assert isinstance(saved, ClassifierFineTuner) and saved.n_steps_ == 2 * 2
    assert saved.n_members == 2 and saved.dim_ == 2 * 384
    assert stored_state(db, settings, tiny.id)["encoder"] == result["encoder"]
    tuned = versions(db, tiny.id)[-1]
    assert tuned.encoder == result["encoder"]
    assert tuned.metrics["fine_tuned_encoder"]["method"] == "classifier"
    assert tuned.metrics["fine_tuned_encoder"]["members"] == 2
    # names of text encoders saved before the classifier method existed still parse
    assert finetuning.parse_encoder_name(f"setfit:project-{tiny.id}:v9-0123abcd") == (tiny.id, 9)


def test_a_re_run_job_reuses_the_saved_encoder(
    db: Database, settings: Settings, worker: Worker, corpus: Callable[..., Corpus]
) -> None:
    tiny = corpus()
    job = finetuning.request_finetune(db, settings, tiny.id, params=TINY)
    worker.run_until_idle()
    first = job_of(db, job.id).result or {}
    saved = finetuning.encoder_dir(settings, tiny.id, job.id) / "learner.json"
    written = saved.stat().st_mtime_ns
    # as after a restart: the same job runs again
    again = finetuning.finetune_project(
        db, settings, tiny.id, job_id=job.id, params=finetuning.FinetuneParams.checked(TINY)
    )
    assert again.reused and again.encoder == first["encoder"] and again.n_encoded == 0
    assert saved.stat().st_mtime_ns == written


def test_the_encoder_name_resolves_in_a_fresh_process(
    db: Database, settings: Settings, worker: Worker, corpus: Callable[..., Corpus]
) -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the name resolves from the models directory, whatever the database")
    tiny = corpus()
    job = finetuning.request_finetune(db, settings, tiny.id, params=TINY)
    worker.run_until_idle()
    name = (job_of(db, job.id).result or {})["encoder"]
    text = SPORT[0]
    with EmbeddingCache(settings.embeddings_dir, name, 384) as cache:
        cached, found = cache.get_many([content_hash(text)])
    assert found.all()
    # a new interpreter knows nothing of this encoder until the models directory names it
    script = (
        "import json, sys\n"
        "from labella.config import Settings\n"
        "from labella.learners.encoders import encoder_names\n"
        "from labella.services.encoding import open_cache\n"
        "name, data_dir, cache_dir, text = sys.argv[1:]\n"
        "assert name not in encoder_names()\n"
        "s = Settings(data_dir=data_dir, embedding_cache_dir=cache_dir, _env_file=None)\n"
        "encoder, cache = open_cache(s, name)\n"
        "cache.close()\n"
        "print(json.dumps(encoder.encode([text])[0].tolist()))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            name,
            str(settings.data_dir),
            str(settings.embeddings_dir),
            text,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    vector = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]), dtype=np.float32)
    np.testing.assert_allclose(vector, cached[0], atol=1e-5)


# -- bad cases: a clear error, nothing stored changes ---------------------------------------------


def test_too_few_labels_is_refused_with_the_counts(
    db: Database, settings: Settings, corpus: Callable[..., Corpus]
) -> None:
    tiny = corpus(per_class=5)
    before = stored_state(db, settings, tiny.id)
    with pytest.raises(NotReady, match=r"at least 8 human labels .* has sport 5, cooking 5"):
        finetuning.request_finetune(db, settings, tiny.id)
    assert stored_state(db, settings, tiny.id) == before


def test_labels_removed_after_the_request_fail_the_job_readably(
    db: Database, settings: Settings, worker: Worker, corpus: Callable[..., Corpus]
) -> None:
    tiny = corpus()
    job = finetuning.request_finetune(db, settings, tiny.id, params=TINY)
    # meanwhile an annotator corrects a label: sport is left with 7
    sport = tiny.items["sport"][0]
    labeling.submit_label(db, tiny.id, sport, classes=["cooking"], annotator="t")
    before = stored_state(db, settings, tiny.id)
    worker.run_until_idle()
    failed = job_of(db, job.id)
    assert failed.status == JobStatus.FAILED
    assert "has sport 7, cooking 9" in (failed.error or "")
    assert stored_state(db, settings, tiny.id) == before


def test_multi_label_and_detection_projects_are_refused(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    # (image classification projects are fine-tuned too: tests/services/test_image_finetuning.py)
    multi = make_project(("a", "b"), multi_label=True)
    with pytest.raises(InvalidInput, match="multi-label project is not supported yet"):
        finetuning.request_finetune(db, settings, multi.id)
    boxes = make_project(("car", "person"), kind="object_detection")
    with pytest.raises(InvalidInput, match="text and image classification projects"):
        finetuning.request_finetune(db, settings, boxes.id)
    for project in (multi, boxes):
        with db.reader() as session:
            assert session.scalar(select(func.count()).where(Job.project_id == project.id)) == 0


def test_bad_settings_and_encoder_names_are_refused(
    db: Database,
    settings: Settings,
    corpus: Callable[..., Corpus],
    make_project: Callable[..., Any],
) -> None:
    tiny = corpus()
    with pytest.raises(InvalidInput, match="epochs must be a whole number from 1 to 30"):
        finetuning.request_finetune(db, settings, tiny.id, params={"epochs": 0})
    with pytest.raises(InvalidInput, match="epochs must be a whole number from 1 to 10, got 11"):
        finetuning.request_finetune(
            db, settings, tiny.id, params={"method": "setfit", "epochs": 11}
        )
    with pytest.raises(InvalidInput, match=r"classifier method of a text project: image_size"):
        finetuning.request_finetune(db, settings, tiny.id, params={"image_size": 64})
    with pytest.raises(InvalidInput, match="unknown fine-tuning method 'lora'; known: classifier"):
        finetuning.request_finetune(db, settings, tiny.id, params={"method": "lora"})
    with pytest.raises(InvalidInput, match=r"classifier method of a text project: n_iterations"):
        finetuning.request_finetune(
            db, settings, tiny.id, params={"method": "classifier", "n_iterations": 2}
        )
    with pytest.raises(InvalidInput, match="members must be a whole number from 1 to 5, got 6"):
        finetuning.request_finetune(db, settings, tiny.id, params={"members": 6})
    with pytest.raises(InvalidInput, match="unknown fine-tuning setting"):
        finetuning.request_finetune(db, settings, tiny.id, params={"lr": 1})
    with pytest.raises(InvalidInput, match="unknown text encoder 'nope'"):
        finetuning.switch_encoder(db, settings, tiny.id, "nope")
    other = make_project(("x", "y"))
    with pytest.raises(InvalidInput, match="was fine-tuned for project"):
        finetuning.switch_encoder(db, settings, other.id, f"setfit:project-{tiny.id}:v1-0123abcd")
    with pytest.raises(InvalidInput, match="unknown text encoder"):
        finetuning.switch_encoder(db, settings, tiny.id, "efficientnet-lite0")
    assert stored_state(db, settings, tiny.id)["encoder"] == MINILM_NAME


# -- over HTTP ------------------------------------------------------------------------------------


def test_the_api_queues_a_finetune_job_or_says_what_is_missing(
    client: Any, db: Database, corpus: Callable[..., Corpus], make_project: Callable[..., Any]
) -> None:
    few = corpus(per_class=3)
    answer = client.post(f"/api/projects/{few.id}/finetune")
    assert answer.status_code == 409
    assert "needs at least 8 human labels" in answer.json()["detail"]
    assert "sport 3, cooking 3" in answer.json()["detail"]

    tiny = corpus()
    bad = client.post(f"/api/projects/{tiny.id}/finetune", json={"epochs": 0})
    assert bad.status_code == 422
    bad = client.post(f"/api/projects/{tiny.id}/finetune", json={"method": "lora"})
    assert bad.status_code == 422 and "method" in bad.text
    bad = client.post(f"/api/projects/{tiny.id}/finetune", json={"members": 0})
    assert bad.status_code == 422 and "members" in bad.text
    bad = client.post(
        f"/api/projects/{tiny.id}/finetune", json={"method": "classifier", "max_pairs": 10}
    )
    assert bad.status_code == 422 and "max_pairs" in bad.json()["detail"]
    answer = client.post(f"/api/projects/{tiny.id}/finetune", json={"n_iterations": 2})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["kind"] == "finetune_encoder" and job["status"] == "queued"
    assert job_of(db, job["id"]).params["n_iterations"] == 2

    multi = make_project(("a", "b"), multi_label=True)
    answer = client.post(f"/api/projects/{multi.id}/finetune")
    assert answer.status_code == 422
    assert "multi-label project is not supported yet" in answer.json()["detail"]


def test_patch_encoder_refuses_an_unknown_name_and_changes_nothing(
    client: Any, db: Database, settings: Settings, corpus: Callable[..., Corpus]
) -> None:
    tiny = corpus(per_class=2)
    before = client.get(f"/api/projects/{tiny.id}").json()
    answer = client.patch(
        f"/api/projects/{tiny.id}", json={"encoder": "no-such-encoder", "retrain_every": 7}
    )
    assert answer.status_code == 422
    assert "unknown text encoder 'no-such-encoder'" in answer.json()["detail"]
    assert client.get(f"/api/projects/{tiny.id}").json() == before
    # the same encoder again: nothing to do, the other settings apply
    answer = client.patch(
        f"/api/projects/{tiny.id}", json={"encoder": MINILM_NAME, "retrain_every": 7}
    )
    assert answer.status_code == 200
    assert answer.json()["encoder"] == MINILM_NAME and answer.json()["retrain_every"] == 7


# -- from the command line ------------------------------------------------------------------------


def test_the_cli_fine_tunes_and_retrains_or_says_what_is_missing(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, embedding_cache_dir: Any
) -> None:
    from typer.testing import CliRunner

    from labella.cli.main import app

    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELLA_EMBEDDING_CACHE_DIR", str(embedding_cache_dir))
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args))

    assert run("project", "create", "topics", "--classes", "sport,cooking").exit_code == 0
    rows = [f'"{t}",sport' for t in SPORT] + [f'"{t}",cooking' for t in COOKING]
    few = tmp_path / "few.csv"
    few.write_text("text,label\n" + "\n".join(rows[:3] + rows[10:13]) + "\n")
    assert run("import", "topics", str(few)).exit_code == 0

    refused = run("finetune", "topics")
    assert refused.exit_code == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: fine-tuning the encoder needs at least 8 human labels")
    assert "sport 3, cooking 3" in line
    missing = run("finetune", "no-such-project")
    assert missing.exit_code == 1 and "no project named 'no-such-project'" in missing.stderr

    rest = tmp_path / "rest.csv"
    rest.write_text("text,label\n" + "\n".join(rows[3:10] + rows[13:]) + "\n")
    assert run("import", "topics", str(rest)).exit_code == 0
    done = run("finetune", "topics", "--iterations", "1", "--max-pairs", "32")
    assert done.exit_code == 0, done.output
    assert "fine-tuned all-MiniLM-L6-v2 on 20 labels (SetFit, 32 pairs" in done.stdout
    # the encode job had already queued a first training (v1, on MiniLM); this one is on the
    # fine-tuned vectors
    assert "model v2 trained on 20 labels" in done.stdout, done.stdout
