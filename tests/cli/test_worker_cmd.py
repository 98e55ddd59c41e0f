"""`labella worker`: the job worker on its own (for a server started with --no-worker), with the
server's three lanes, run as a real process until it is stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from labella.config import Settings
from labella.jobs import queue
from labella.jobs.worker import DEFAULT_LANES
from labella.services import projects as project_service
from labella.services.importing import content_hash
from labella.services.ranking import RANK_JOB
from labella.storage.db import Database
from labella.storage.migrate import upgrade_database
from labella.storage.models import Item, Job, JobStatus
from tests.services.test_finetuning import COOKING, SPORT


def _labella() -> list[str]:
    script = Path(sys.executable).with_name("labella")
    return [str(script)] if script.exists() else [sys.executable, "-m", "labella.cli.main"]


def test_the_worker_runs_queued_jobs_in_every_lane_until_stopped(
    tmp_path: Path, embedding_cache_dir: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        embedding_cache_dir=embedding_cache_dir,
        _env_file=None,  # type: ignore[call-arg]
    )
    settings.ensure_dirs()
    db = Database.from_settings(settings)
    upgrade_database(db.engine)
    project = project_service.create_project(
        db,
        project_service.ProjectSpec(
            name="worker", classes=[project_service.ClassSpec("a"), project_service.ClassSpec("b")]
        ),
    )
    with db.transaction() as session:
        for key, text in enumerate((SPORT[0], COOKING[0])):
            session.add(
                Item(
                    project_id=project.id,
                    text=text,
                    content_hash=content_hash(text),
                    random_key=key / 10,
                )
            )
    # a ranking of items not yet embedded: quick, and no model to load in the worker process
    with db.transaction() as session:
        job = queue.enqueue(session, kind=RANK_JOB, project_id=project.id)

    env = {
        **os.environ,
        "LABELLA_EMBEDDING_CACHE_DIR": str(embedding_cache_dir),
        "LABELLA_WORKER_POLL_SECONDS": "0.1",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("LABELLA_DATABASE_URL", None)
    process = subprocess.Popen(
        [*_labella(), "worker", "--data-dir", str(settings.data_dir)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            with db.reader() as session:
                status = session.get(Job, job.id).status  # type: ignore[union-attr]
            if status == JobStatus.SUCCEEDED:
                break
            assert status != JobStatus.FAILED and process.poll() is None
            assert time.monotonic() < deadline, "the worker did not run the ranking job"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        db.dispose()
    assert process.returncode == 0, output
    started = output.splitlines()[0]
    assert all(lane.name in started for lane in DEFAULT_LANES), started
    assert "labella-finetune-lane" in started
    assert output.rstrip().endswith("worker stopped")
