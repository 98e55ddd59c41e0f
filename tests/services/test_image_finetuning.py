"""The finetune_encoder job on a tiny image classification project: the real EfficientNet-Lite0
is fine-tuned (one epoch on 32 px copies of PNGs the test draws), the project switches to it, its
images are re-encoded under the new encoder's own cache namespace and a model is trained on those
vectors; the name resolves in a fresh process; and the bad cases, each refused by name with
nothing stored changed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from labella.config import Settings
from labella.errors import InvalidInput, NotReady
from labella.jobs.worker import Worker
from labella.learners.cache import EmbeddingCache
from labella.services import finetuning, labeling
from labella.services.image_import import import_folder
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import AuditEvent, Item, Job, JobStatus, ModelVersion, Prediction

BASE = "efficientnet-lite0-plain"  # 128 px, head only: the cheapest base encoder to set up
TINY = {"epochs": 1, "image_size": 32, "batch_size": 8}
COLOURS = {"red": (220, 40, 40), "blue": (40, 40, 220)}
PER_CLASS = 10


def noisy_png(colour: tuple[int, int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.asarray(colour) + rng.integers(-30, 31, size=(20, 20, 3)), 0, 255)
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


class Photos:
    """An image project whose folder import labelled ``per_class`` images of each colour (one
    subfolder per class) and left two more of each unlabelled."""

    def __init__(self, db: Database, settings: Settings, project: Any, folder: Path) -> None:
        self.db = db
        self.id = project.id
        self.name = project.name
        self.folder = folder

    def item_ids(self, name_prefix: str) -> list[int]:
        with self.db.reader() as session:
            return list(
                session.scalars(
                    select(Item.id)
                    .where(Item.project_id == self.id, Item.text.startswith(name_prefix))
                    .order_by(Item.id)
                )
            )


@pytest.fixture
def photos(
    db: Database,
    settings: Settings,
    worker: Worker,
    make_project: Callable[..., Any],
    tmp_path: Path,
) -> Callable[..., Photos]:
    def factory(*, per_class: int = PER_CLASS, **overrides: Any) -> Photos:
        overrides.setdefault("retrain_every", 1000)
        overrides.setdefault("online_update_every", 0)
        overrides.setdefault("kind", "image_classification")
        overrides.setdefault("encoder", BASE)
        project = make_project(tuple(COLOURS), **overrides)
        folder = tmp_path / f"photos-{project.id}"
        for c, (name, colour) in enumerate(COLOURS.items()):
            labelled = folder / name
            labelled.mkdir(parents=True)
            for i in range(per_class):
                (labelled / f"{name}{i}.png").write_bytes(noisy_png(colour, 100 * c + i))
            for i in range(2):  # unlabelled, at the top level
                (folder / f"more-{name}{i}.png").write_bytes(noisy_png(colour, 100 * c + 50 + i))
        import_folder(db, settings, project.id, folder, roots=[folder])
        worker.run_until_idle()  # encode, then train on the imported labels
        return Photos(db, settings, project, folder)

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


def stored_state(db: Database, settings: Settings, project_id: int) -> dict[str, Any]:
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        jobs = session.scalar(
            select(func.count()).where(
                Job.project_id == project_id, Job.kind == finetuning.FINETUNE_JOB
            )
        )
        return {
            "encoder": project.encoder,
            "embedded": repo.count_embedded(session, project_id),
            "versions": len(versions(db, project_id)),
            "finetune_jobs": jobs,
            "models": sorted(p.name for p in settings.models_dir.rglob("encoder-*")),
        }


def test_finetune_switches_an_image_project_and_trains_on_the_fine_tuned_vectors(
    db: Database, settings: Settings, worker: Worker, photos: Callable[..., Photos]
) -> None:
    tiny = photos()
    [v1] = versions(db, tiny.id)
    assert v1.encoder == BASE
    keys = item_keys(db, tiny.id)
    with EmbeddingCache(settings.embeddings_dir, BASE, 1280) as cache:
        base_vectors, found = cache.get_many(keys)
    assert found.all()

    job = finetuning.request_finetune(db, settings, tiny.id, params=TINY, actor="alice")
    assert job.params == {**TINY, "actor": "alice"}
    assert finetuning.request_finetune(db, settings, tiny.id, params=TINY).id == job.id
    worker.run_until_idle()

    done = job_of(db, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    result = done.result or {}
    name = result["encoder"]
    assert name.startswith(f"finetuned-image:project-{tiny.id}:v{job.id}-")
    assert finetuning.parse_encoder_name(name) == (tiny.id, job.id)
    assert result["modality"] == "image" and result["image_size"] == 32
    assert result["previous_encoder"] == BASE and result["base_encoder"] == BASE
    assert result["n_labels"] == 2 * PER_CLASS and result["n_skipped"] == 0
    assert result["n_items"] == len(keys) == 2 * PER_CLASS + 4
    assert f"fine-tuned EfficientNet-Lite0 (from {BASE}) on 20 labelled images" in done.message
    assert "1 epoch(s) at 32 px" in done.message
    assert done.progress_done == done.progress_total == 100

    state = stored_state(db, settings, tiny.id)
    assert state["encoder"] == name and state["embedded"] == len(keys)
    saved = finetuning.encoder_dir(settings, tiny.id, job.id)
    sidecar = json.loads((saved / "labella-encoder.json").read_text())
    assert sidecar["name"] == name and sidecar["modality"] == "image" and sidecar["dim"] == 1280
    assert sidecar["n_steps"] == 3  # 20 labels in batches of 8, one epoch
    with EmbeddingCache(settings.embeddings_dir, name, 1280) as cache:
        tuned, found = cache.get_many(keys)
    assert found.all()
    np.testing.assert_allclose(np.linalg.norm(tuned, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(tuned, base_vectors, atol=1e-3)
    # the cached vectors are the saved model's features of the files on disk
    from labella.learners.encoders import get_encoder

    first = sorted((tiny.folder / "blue").glob("*.png"))[0].read_bytes()
    direct = get_encoder(name).encode([first])
    [first_id] = tiny.item_ids("blue/blue0")
    with db.reader() as session:
        key = session.get(Item, first_id).content_hash  # type: ignore[union-attr]
    np.testing.assert_allclose(direct[0], tuned[keys.index(key)], atol=1e-5)

    # the training it queued made v2 on the fine-tuned vectors, and it predicts with it
    v1, v2 = versions(db, tiny.id)
    assert v2.encoder == name and v2.metrics["encoder"] == name
    assert v2.metrics["fine_tuned_encoder"]["job_id"] == job.id
    assert v2.metrics["fine_tuned_encoder"]["image_size"] == 32
    with db.reader() as session:
        model_ids = set(
            session.scalars(
                select(Prediction.model_version_id).where(Prediction.project_id == tiny.id)
            )
        )
        switched = session.scalars(
            select(AuditEvent).where(
                AuditEvent.project_id == tiny.id, AuditEvent.action == "encoder.finetune"
            )
        ).one()
    assert model_ids == {v2.id}
    assert switched.detail["from"] == BASE and switched.detail["to"] == name
    assert switched.detail["image_size"] == 32

    # safe to re-run, as after a restart: the saved model is reused, nothing is re-encoded
    weights = saved / "weights.pt"
    written = weights.stat().st_mtime_ns
    again = finetuning.finetune_project(
        db, settings, tiny.id, job_id=job.id, params=finetuning.ImageFinetuneParams(**TINY)
    )
    assert again.reused and again.encoder == name and again.n_encoded == 0
    assert weights.stat().st_mtime_ns == written

    # back to the base encoder, whose vectors are all still cached, and a training follows
    finetuning.switch_encoder(db, settings, tiny.id, BASE)
    worker.run_until_idle()
    assert stored_state(db, settings, tiny.id)["encoder"] == BASE
    assert versions(db, tiny.id)[-1].encoder == BASE
    with db.reader() as session:
        failed = session.scalar(
            select(func.count()).where(Job.project_id == tiny.id, Job.status == JobStatus.FAILED)
        )
    assert failed == 0


def test_the_image_encoder_name_resolves_in_a_fresh_process(
    db: Database, settings: Settings, worker: Worker, photos: Callable[..., Photos]
) -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the name resolves from the models directory, whatever the database")
    tiny = photos()
    job = finetuning.request_finetune(db, settings, tiny.id, params=TINY)
    worker.run_until_idle()
    name = (job_of(db, job.id).result or {})["encoder"]
    image = sorted((tiny.folder / "red").glob("*.png"))[0]
    [item_id] = tiny.item_ids("red/red0")
    with db.reader() as session:
        key = session.get(Item, item_id).content_hash  # type: ignore[union-attr]
    with EmbeddingCache(settings.embeddings_dir, name, 1280) as cache:
        cached, found = cache.get_many([key])
    assert found.all()
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from labella.config import Settings\n"
        "from labella.learners.encoders import encoder_modality, encoder_names\n"
        "from labella.services.encoding import open_cache\n"
        "name, data_dir, cache_dir, image = sys.argv[1:]\n"
        "assert name not in encoder_names()\n"
        "s = Settings(data_dir=data_dir, embedding_cache_dir=cache_dir, _env_file=None)\n"
        "encoder, cache = open_cache(s, name)\n"
        "cache.close()\n"
        "assert encoder_modality(name) == 'image', encoder_modality(name)\n"
        "print(json.dumps(encoder.encode([Path(image).read_bytes()])[0].tolist()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LABELLA_TORCH_DEVICE"}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            name,
            str(settings.data_dir),
            str(settings.embeddings_dir),
            str(image),
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


def test_too_few_labelled_images_is_refused_with_the_counts(
    db: Database, settings: Settings, photos: Callable[..., Photos]
) -> None:
    few = photos(per_class=5)
    before = stored_state(db, settings, few.id)
    with pytest.raises(NotReady, match=r"at least 8 human labels .* has red 5, blue 5"):
        finetuning.request_finetune(db, settings, few.id, params=TINY)
    assert stored_state(db, settings, few.id) == before


def test_bad_image_settings_are_refused_by_name(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    # the settings are checked before the labels: an empty project is enough
    project = make_project(tuple(COLOURS), kind="image_classification", encoder=BASE)
    for params, message in (
        ({"epochs": 0}, "epochs must be a whole number from 1 to 50, got 0"),
        ({"epochs": 51}, "epochs must be a whole number from 1 to 50"),
        ({"image_size": 16}, "image_size must be a whole number from 32 to 512, got 16"),
        ({"image_size": "big"}, "image_size must be a whole number"),
        ({"batch_size": 1}, "batch_size must be a whole number from 2 to 128"),
        ({"n_iterations": 2}, r"unknown fine-tuning setting\(s\) for an image project"),
    ):
        with pytest.raises(InvalidInput, match=message):
            finetuning.request_finetune(db, settings, project.id, params=params)
    assert stored_state(db, settings, project.id)["finetune_jobs"] == 0


def test_multi_label_detection_and_unknown_encoder_projects_are_refused(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    multi = make_project(("a", "b"), kind="image_classification", multi_label=True)
    with pytest.raises(InvalidInput, match="multi-label project is not supported yet"):
        finetuning.request_finetune(db, settings, multi.id)
    boxes = make_project(("car", "person"), kind="object_detection")
    with pytest.raises(InvalidInput, match="is a object detection project"):
        finetuning.request_finetune(db, settings, boxes.id)
    for project in (multi, boxes):
        assert stored_state(db, settings, project.id)["finetune_jobs"] == 0


def test_an_image_project_cannot_switch_to_a_text_or_foreign_encoder(
    db: Database, settings: Settings, make_project: Callable[..., Any]
) -> None:
    project = make_project(tuple(COLOURS), kind="image_classification", encoder=BASE)
    with pytest.raises(InvalidInput, match="unknown image encoder 'all-MiniLM-L6-v2'"):
        finetuning.switch_encoder(db, settings, project.id, "all-MiniLM-L6-v2")
    with pytest.raises(InvalidInput, match="was fine-tuned for project"):
        finetuning.switch_encoder(
            db, settings, project.id, f"finetuned-image:project-{project.id + 1}:v3-0123abcd"
        )
    with pytest.raises(InvalidInput, match="unknown image encoder"):
        finetuning.switch_encoder(
            db, settings, project.id, f"finetuned-image:project-{project.id}:v3-0123abcd"
        )
    assert stored_state(db, settings, project.id)["encoder"] == BASE


def test_a_labelled_image_gone_from_disk_is_left_out_and_named(
    db: Database, settings: Settings, worker: Worker, photos: Callable[..., Photos]
) -> None:
    tiny = photos(per_class=PER_CLASS)
    (tiny.folder / "red" / "red3.png").unlink()
    # another red label keeps red at 10 usable labels (9 readable) after the loss
    [extra] = tiny.item_ids("more-red0")
    labeling.submit_label(db, tiny.id, extra, classes=["red"], annotator="t")
    job = finetuning.request_finetune(db, settings, tiny.id, params=TINY)
    worker.run_until_idle()
    done = job_of(db, job.id)
    assert done.status == JobStatus.SUCCEEDED, done.error
    result = done.result or {}
    assert result["n_labels"] == 2 * PER_CLASS and result["n_skipped"] == 1
    assert "1 labelled images could not be read and were left out" in done.message
    sidecar = finetuning.read_sidecar(finetuning.encoder_dir(settings, tiny.id, job.id))
    assert sidecar is not None and "no longer on disk" in sidecar["skipped_examples"][0]
    # the switch left that item unembedded; the encode job it queued names it
    with db.reader() as session:
        encode = session.scalars(
            select(Job).where(Job.project_id == tiny.id, Job.kind == "encode").order_by(Job.id)
        ).all()[-1]
    assert encode.result is not None and encode.result["unreadable"] == 1
    assert stored_state(db, settings, tiny.id)["embedded"] == 2 * PER_CLASS + 4 - 1


# -- over HTTP ------------------------------------------------------------------------------------


def test_the_api_queues_an_image_finetune_or_says_what_is_wrong(
    client: Any, db: Database, photos: Callable[..., Photos], make_project: Callable[..., Any]
) -> None:
    few = photos(per_class=3)
    answer = client.post(f"/api/projects/{few.id}/finetune")
    assert answer.status_code == 409
    assert "red 3, blue 3" in answer.json()["detail"]
    answer = client.post(f"/api/projects/{few.id}/finetune", json={"image_size": 8})
    assert answer.status_code == 422
    answer = client.post(f"/api/projects/{few.id}/finetune", json={"n_iterations": 3})
    assert answer.status_code == 422
    assert "unknown fine-tuning setting(s) for an image project" in answer.json()["detail"]

    project = make_project(tuple(COLOURS), kind="image_classification", encoder=BASE)
    answer = client.post(f"/api/projects/{project.id}/finetune", json={"epochs": 30})
    assert answer.status_code == 409  # the settings are fine; the labels are not there yet
    boxes = make_project(("car", "person"), kind="object_detection")
    answer = client.post(f"/api/projects/{boxes.id}/finetune")
    assert answer.status_code == 422
    assert "text and image classification projects" in answer.json()["detail"]
    multi = make_project(("a", "b"), kind="image_classification", multi_label=True)
    answer = client.post(f"/api/projects/{multi.id}/finetune")
    assert answer.status_code == 422
    assert "not supported yet" in answer.json()["detail"]


# -- from the command line ------------------------------------------------------------------------


def test_the_cli_fine_tunes_an_image_project_or_says_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedding_cache_dir: Path
) -> None:
    from typer.testing import CliRunner

    from labella.cli.main import app

    monkeypatch.setenv("LABELLA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELLA_EMBEDDING_CACHE_DIR", str(embedding_cache_dir))
    monkeypatch.delenv("LABELLA_DATABASE_URL", raising=False)
    monkeypatch.delenv("LABELLA_TORCH_DEVICE", raising=False)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args))

    def photos_of(folder: Path, first: int, last: int) -> Path:
        for c, (name, colour) in enumerate(COLOURS.items()):
            (folder / name).mkdir(parents=True, exist_ok=True)
            for i in range(first, last):
                (folder / name / f"{name}{i}.png").write_bytes(noisy_png(colour, 100 * c + i))
        return folder

    created = run(
        "project", "create", "colours", "--classes", "red,blue",
        "--kind", "image_classification", "--encoder", BASE,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert run("import", "colours", str(photos_of(tmp_path / "few", 0, 3))).exit_code == 0

    refused = run("finetune", "colours")
    assert refused.exit_code == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: fine-tuning the encoder needs at least 8 human labels")
    assert "red 3, blue 3" in line
    text_only = run("finetune", "colours", "--iterations", "2")
    assert text_only.exit_code == 1
    [line] = text_only.stderr.strip().splitlines()
    assert "unknown fine-tuning setting(s) for an image project: n_iterations" in line
    too_small = run("finetune", "colours", "--image-size", "8")
    assert too_small.exit_code != 0

    assert run("import", "colours", str(photos_of(tmp_path / "rest", 3, 9))).exit_code == 0
    done = run("finetune", "colours", "--epochs", "1", "--image-size", "32")
    assert done.exit_code == 0, done.output
    assert "fine-tuned EfficientNet-Lite0 (from efficientnet-lite0-plain) on 18 labelled" in (
        done.stdout
    )
    assert "switched to finetuned-image:project-1:v" in done.stdout
    assert "model v2 trained on 18 labels" in done.stdout, done.stdout
