"""Fine-tuning a project's encoder on its labels, in a background job ("finetune_encoder").

Text: a frozen all-MiniLM-L6-v2 plus a linear head stops improving after a few hundred labels
(issue 6: even every label gives AG News 68% auto-labelled at 95% precision). Fine-tuning adapts
the encoder itself to the human labels, so the classes the project cares about separate in the
embedding space. Two methods (:mod:`labella.learners.finetune`): ``classifier``, the default, trains
the encoder end to end with a classification layer and cross-entropy (:class:`~labella.learners.
finetune.ClassifierFineTuner`); ``setfit`` (Tunstall et al., 2022, "Efficient Few-Shot Learning
Without Prompts", :class:`~labella.learners.finetune.SetFitLearner`) with contrastive sentence
pairs. ``classifier`` is about as accurate for a tenth of the CPU time: on AG News with 250
actively picked labels, 0.863 test accuracy (3 seeds, ~3 minutes each) against SetFit's 0.866 (2
seeds, ~25 minutes each; benchmarks/RESULTS.md). By default it fine-tunes two copies of the
encoder with different seeds and uses them side by side (0.866 on AG News, 0.796 on SST-2, in
twice the time); ``members`` sets how many.

Images: a linear head on frozen EfficientNet-Lite0 features reaches 0.686 / 0.752 CIFAR-10 test
accuracy with 300 / 1,000 actively picked labels; fine-tuning the whole network on the same
labels (:class:`labella.learners.image_finetune.ImageFineTuner`, Kornblith et al., CVPR 2019)
gives 0.798 / 0.859 (issue 5). The fine-tuned backbone's pooled features become the project's
vectors, so the head, the ranking and the metrics all gain.

The job:

1. checks that the project can be fine-tuned (a single-label text or image classification project
   on a fine-tunable encoder, with at least :data:`MIN_LABELS_PER_CLASS` human labels in each of
   :data:`MIN_CLASSES` classes; the evaluation sample's labels are held out, as they are from
   training);
2. fine-tunes a copy of the base encoder on those labels (image files are read through the media
   store, checked against their content hash) and saves it under the models directory,
   ``models/project-N/encoder-<job id>/`` (:func:`encoder_dir`);
3. registers it with the encoder registry as ``finetuned-text:project-N:v<job id>-<token>`` for
   text (``setfit:`` for text encoders saved before there was a choice of method) or
   ``finetuned-image:project-N:v<job id>-<token>`` for images (:func:`encoder_name`; the random
   token keeps two installations that share an embedding cache directory, or a database
   restored from a backup, from reading each other's vectors):
   in this process at once, and in any later one by :func:`ensure_registered`, which
   :func:`labella.services.encoding.open_cache` calls, so a restarted server finds it on disk;
4. encodes every item of the project into the embedding cache under the new name (the base
   encoder's vectors stay valid under theirs, so switching back costs nothing);
5. switches the project to the new encoder, records it in the audit log and queues a normal
   training, whose head, predictions, ranking and metrics then use the fine-tuned vectors.

When: on request (``POST /api/projects/{id}/finetune``, ``labella finetune``, the dashboard), and
by itself (:func:`maybe_schedule_finetune`, called where a label is committed) once the human
labels reach the project's ``auto_finetune_at`` (250 by default for text projects) and again each
time they double. The worker runs it in a lane of its own (``jobs.worker.FINETUNE_LANE``), so the
other jobs go on meanwhile; a cancel stops it at its next progress report (every optimiser step,
at most every half second), and the switch (5.) refuses a cancelled job, so the project keeps its
encoder.

A re-run (after a restart) reuses the encoder the job already saved, and encoding is idempotent
through the cache. A project switches back with ``PATCH /api/projects/{id}`` ``{"encoder": ...}``
(:func:`switch_encoder`).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labella.config import Settings
from labella.errors import InvalidInput, NotReady
from labella.jobs import queue
from labella.jobs.runtime import JobCancelled, JobContext, executor
from labella.services.encoding import (
    ENCODE_JOB,
    ProgressReporter,
    _ImageReader,
    _no_progress,
    _Pending,
    resume_note,
)
from labella.storage import repositories as repo
from labella.storage.db import Database
from labella.storage.models import Item, Job, JobStatus, Project, ProjectKind

FINETUNE_JOB = "finetune_encoder"
MIN_LABELS_PER_CLASS = 8
"""Fine-tuning pays from a few labels per class; fewer give SetFit too few distinct positive pairs
and overfit the classifier method to a handful of texts."""
MIN_CLASSES = 2

_NAME = re.compile(r"^(?:finetuned-text|setfit|finetuned-image):project-(\d+):v(\d+)-[0-9a-f]{8}$")
_SIDECAR = "labella-encoder.json"
_IN_BATCH = 500

# Text: the methods and the settings a request may set for each, with their bounds. CPU time
# grows with labels x epochs (classifier) or pairs x epochs (setfit).
DEFAULT_METHOD = "classifier"
# classifier: 8 epochs at 5e-5 (the learner's defaults); in a trial on SST-2's 500 picked labels,
# test accuracy rose from 0.78 after 2 epochs to 0.81 after 4 and 0.83 after 6, then held.
# setfit: 8,000 pairs on the ~250 labels the default strategy picks reached 0.800
# against 0.755 for the frozen encoder's linear head, 3,000 pairs only 0.765, so the cap must not
# cut the pairs 20 iterations make from 200 labels.
# members: encoders fine-tuned side by side (a deep ensemble, TextFineTuner's n_members). Two
# classifier fine-tunings took 250 picked labels from 0.863 to 0.866 on AG News and from 0.790 to
# 0.796 on SST-2 (means of 3 seeds, benchmarks/RESULTS.md), for twice the CPU time.
METHOD_DEFAULTS: dict[str, dict[str, int]] = {
    "classifier": {"epochs": 8, "batch_size": 16, "members": 2},
    "setfit": {"n_iterations": 20, "epochs": 1, "batch_size": 16, "max_pairs": 8000, "members": 1},
}
DEFAULTS = METHOD_DEFAULTS[DEFAULT_METHOD]
_METHOD_BOUNDS: dict[str, dict[str, tuple[int, int]]] = {
    "classifier": {"epochs": (1, 30), "batch_size": (2, 128), "members": (1, 5)},
    "setfit": {
        "n_iterations": (1, 100),
        "epochs": (1, 10),
        "batch_size": (2, 128),
        "max_pairs": (2, 100_000),
        "members": (1, 5),
    },
}
# Settings only SetFit has: given without a method, they ask for SetFit (as did every text job
# queued before there was a choice of method).
_SETFIT_ONLY = frozenset({"n_iterations", "max_pairs"})
# Images: the recipe measured on CIFAR-10 (issue 5: 224 px, 15 epochs). CPU time grows with
# labels x epochs x image_size squared: ~10 images/s at 224 px on 2 idle cores
# (benchmarks/image_finetune_cpu.py), so 300 labels take ~8 minutes and 1,000 ~25, which a
# background job can afford; a smaller image_size or fewer epochs trade accuracy for time.
IMAGE_DEFAULTS: dict[str, int] = {"epochs": 15, "image_size": 224, "batch_size": 32}
# What a job's params hold besides the settings: who asked, and for an automatic fine-tuning
# the usable labels it was queued at (maybe_schedule_finetune counts from them after a failure).
_JOB_META = frozenset({"actor", "auto_labels"})
_IMAGE_BOUNDS: dict[str, tuple[int, int]] = {
    "epochs": (1, 50),
    "image_size": (32, 512),
    "batch_size": (2, 128),
}
# ImageFineTuner fine-tunes EfficientNet-Lite0; a project on either of its registered variants
# (or on a model fine-tuned from one) may be fine-tuned.
IMAGE_BASES = ("efficientnet-lite0", "efficientnet-lite0-plain")


# -- names and files -----------------------------------------------------------------------------


def encoder_name(project_id: int, job_id: int, token: str, *, modality: str = "text") -> str:
    """The registry name (and embedding cache namespace) of the encoder a job fine-tuned;
    ``token`` is 8 random hex digits, drawn once when the encoder is saved."""
    prefix = "finetuned-image" if modality == "image" else "finetuned-text"
    return f"{prefix}:project-{project_id}:v{job_id}-{token}"


def parse_encoder_name(name: str) -> tuple[int, int] | None:
    """``(project id, job id)`` of a fine-tuned encoder's name; None for any other name."""
    found = _NAME.match(name)
    return (int(found.group(1)), int(found.group(2))) if found else None


def encoder_dir(settings: Settings, project_id: int, job_id: int) -> Path:
    return settings.models_dir / f"project-{project_id}" / f"encoder-{job_id}"


def read_sidecar(directory: Path) -> dict[str, Any] | None:
    """What the job recorded about the encoder saved in ``directory``; None while it is not
    complete (the sidecar is written last, after the learner's own atomic save)."""
    path = directory / _SIDECAR
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_sidecar(directory: Path, data: dict[str, Any]) -> None:
    tmp = directory / f".{_SIDECAR}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, directory / _SIDECAR)


# -- the registry ---------------------------------------------------------------------------------


class _SavedLearnerEncoder:
    """A learner a finetune job saved, as a registry encoder: loaded from its directory on the
    first :meth:`encode` (never from the hub), one batch at a time (a tokenizer is not safe to
    call from two threads, and two forward passes would only fight over the same cores)."""

    def __init__(self, name: str, directory: Path, dim: int) -> None:
        self.name = name
        self.dim = dim
        self.directory = directory
        self._learner: Any = None
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()

    def encode(
        self,
        inputs: Sequence[Any],
        *,
        batch_size: int = 64,
        progress: Any = None,
    ) -> np.ndarray:
        """Float32 ``(n, dim)`` vectors of the inputs, in input order."""
        checked = self._validate(inputs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        out = np.zeros((len(checked), self.dim), dtype=np.float32)
        if not checked:
            return out
        learner = self._load()
        with self._encode_lock:
            for start in range(0, len(checked), batch_size):
                batch = checked[start : start + batch_size]
                out[start : start + len(batch)] = self._embed(learner, batch, start, batch_size)
                if progress is not None:
                    progress(start + len(batch), len(checked))
        return out

    def _load(self) -> Any:
        with self._load_lock:
            if self._learner is None:
                self._learner = self._load_learner()
            return self._learner

    def _validate(self, inputs: Sequence[Any]) -> list[Any]:
        raise NotImplementedError

    def _embed(self, learner: Any, batch: list[Any], offset: int, batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def _load_learner(self) -> Any:
        raise NotImplementedError


class FineTunedEncoder(_SavedLearnerEncoder):
    """A fine-tuned Sentence Transformer saved by a finetune job, as a registry text encoder."""

    def _validate(self, inputs: Sequence[Any]) -> list[Any]:
        from labella.learners.encoders import validate_texts

        return list(validate_texts(inputs))

    def _embed(self, learner: Any, batch: list[Any], offset: int, batch_size: int) -> np.ndarray:
        return np.asarray(learner.encode(batch, batch_size=batch_size))

    def _load_learner(self) -> Any:
        from labella.learners.finetune import TextFineTuner

        return TextFineTuner.load(self.directory)


class FineTunedImageEncoder(_SavedLearnerEncoder):
    """An EfficientNet-Lite0 fine-tuned by a finetune job, as a registry image encoder: the
    backbone's pooled features (1280-d, L2-normalised) at the resolution it was trained at.

    It runs where the stock image encoder does: ``LABELLA_TORCH_DEVICE`` (e.g. ``cuda``) if
    set, else the CPU with as many torch threads as this process has cores. An ImageProblem
    names an input that cannot be decoded.
    """

    modality = "image"

    def _validate(self, inputs: Sequence[Any]) -> list[Any]:
        from labella.learners.image_encoders import validate_images

        return list(validate_images(inputs))

    def _embed(self, learner: Any, batch: list[Any], offset: int, batch_size: int) -> np.ndarray:
        pixels = _decode_numbered(learner, batch, offset)
        return np.asarray(learner.embed(pixels, batch_size=batch_size))

    def _load_learner(self) -> Any:
        from labella.learners.image_finetune import ImageFineTuner

        return ImageFineTuner.load(
            self.directory, device=torch_device(), num_threads=_cpu_threads()
        )


def _decode_numbered(learner: Any, images: Sequence[bytes], offset: int) -> Any:
    """The learner's pixels of ``images``; an ImageProblem names the input by its index in the
    whole call (``offset`` + its place in this batch), not in the batch."""
    import torch

    from labella.images import ImageProblem

    parts = []
    for index, data in enumerate(images):
        try:
            parts.append(learner.decode([data]))
        except ImageProblem as exc:
            reason = str(exc).removeprefix("inputs[0]: ")
            raise ImageProblem(f"inputs[{offset + index}]: {reason}") from exc
    return torch.cat(parts)


def torch_device() -> str:
    """Where image fine-tuning and encoding run: ``LABELLA_TORCH_DEVICE`` (as for the stock
    image encoder), else the CPU."""
    return os.environ.get("LABELLA_TORCH_DEVICE") or "cpu"


def _cpu_threads() -> int:
    from labella.learners.finetune import available_cpus

    return available_cpus()


_registered: dict[str, Path] = {}
_registered_lock = threading.Lock()


def ensure_registered(settings: Settings, name: str) -> bool:
    """Register the fine-tuned encoder ``name`` from this settings' models directory, if ``name``
    has the form of one and it is saved there; True when it is registered.

    Cheap and idempotent: the encoding service calls it before every cache it opens, so a
    restarted process resolves the names its projects use without anything downloaded.
    """
    parsed = parse_encoder_name(name)
    if parsed is None:
        return False
    directory = encoder_dir(settings, *parsed).resolve()
    with _registered_lock:
        if _registered.get(name) == directory:
            return True
        sidecar = read_sidecar(directory)
        if sidecar is None or sidecar.get("name") != name:
            return False
        dim = int(sidecar["dim"])
        from labella.learners.encoders import IMAGE, TEXT, register_encoder

        # replace: a second data directory in the same process (tests, two servers) may hold
        # its own encoder of the same name; the one named by these settings wins
        if sidecar.get("modality") == IMAGE:
            register_encoder(
                name,
                lambda: FineTunedImageEncoder(name, directory, dim),
                modality=IMAGE,
                replace=True,
            )
        else:
            register_encoder(
                name,
                lambda: FineTunedEncoder(name, directory, dim),
                modality=TEXT,
                replace=True,
            )
        _registered[name] = directory
        return True


def model_is_stale(project: Project, model_version: Any) -> bool:
    """True when ``model_version``'s head was fitted on another encoder's vectors than the
    project's (it switched encoders since), so it cannot score the project's vectors. A
    detector's version is no head over the encoder's vectors, so it never is."""
    return (
        model_version is not None
        and project.kind != ProjectKind.OBJECT_DETECTION
        and model_version.encoder != project.encoder
    )


def encoder_metrics(settings: Settings, name: str) -> dict[str, Any]:
    """What a model version records about the encoder of its vectors."""
    metrics: dict[str, Any] = {"encoder": name}
    parsed = parse_encoder_name(name)
    sidecar = read_sidecar(encoder_dir(settings, *parsed)) if parsed else None
    if sidecar is not None:
        recorded = {
            key: sidecar.get(key)
            for key in ("job_id", "base_encoder", "n_labels", "n_pairs", "epochs", "fit_seconds")
        }
        if sidecar.get("modality") == "image":
            recorded["image_size"] = sidecar.get("image_size")
        else:
            recorded["method"] = _method_of(sidecar)
            recorded["members"] = int(sidecar.get("members") or 1)
        metrics["fine_tuned_encoder"] = recorded
    return metrics


# -- checks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneParams:
    """A text fine-tuning: the method and its settings (``n_iterations`` and ``max_pairs`` are
    SetFit's, None for the classifier method)."""

    method: str = DEFAULT_METHOD
    epochs: int = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]
    n_iterations: int | None = None
    max_pairs: int | None = None
    members: int = DEFAULTS["members"]

    @classmethod
    def checked(cls, values: dict[str, Any] | None) -> FinetuneParams:
        """Parameters from a request or a job's params; InvalidInput names a bad one."""
        given = {k: v for k, v in (values or {}).items() if v is not None}
        method = given.pop("method", None)
        if method is None:
            method = "setfit" if _SETFIT_ONLY & set(given) else DEFAULT_METHOD
        if method not in METHOD_DEFAULTS:
            raise InvalidInput(
                f"unknown fine-tuning method {method!r}; known: {', '.join(METHOD_DEFAULTS)}"
            )
        settings = _checked_settings(
            given,
            METHOD_DEFAULTS[method],
            _METHOD_BOUNDS[method],
            f"the {method} method of a text project",
        )
        return cls(method=method, **settings)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method} | {
            key: getattr(self, key) for key in METHOD_DEFAULTS[self.method]
        }


@dataclass(frozen=True)
class ImageFinetuneParams:
    epochs: int = IMAGE_DEFAULTS["epochs"]
    image_size: int = IMAGE_DEFAULTS["image_size"]
    batch_size: int = IMAGE_DEFAULTS["batch_size"]

    @classmethod
    def checked(cls, values: dict[str, Any] | None) -> ImageFinetuneParams:
        """Parameters from a request or a job's params; InvalidInput names a bad one."""
        return cls(**_checked_settings(values, IMAGE_DEFAULTS, _IMAGE_BOUNDS, "an image project"))

    def as_dict(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in IMAGE_DEFAULTS}


def _checked_settings(
    values: dict[str, Any] | None,
    defaults: dict[str, int],
    bounds: dict[str, tuple[int, int]],
    what: str,
) -> dict[str, int]:
    given = {k: v for k, v in (values or {}).items() if v is not None}
    unknown = sorted(set(given) - set(defaults) - _JOB_META)
    if unknown:
        raise InvalidInput(
            f"unknown fine-tuning setting(s) for {what}: {', '.join(unknown)}; "
            f"known: {', '.join(defaults)}"
        )
    for key, (low, high) in bounds.items():
        value = given.get(key, defaults[key])
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput(f"{key} must be a whole number from {low} to {high}, got {value!r}")
    return {key: int(given.get(key, defaults[key])) for key in defaults}


def params_for(
    project: Project, values: dict[str, Any] | None
) -> FinetuneParams | ImageFinetuneParams:
    """The checked settings of a fine-tuning of ``project`` (text and image ones differ)."""
    if project.kind == ProjectKind.IMAGE_CLASSIFICATION:
        return ImageFinetuneParams.checked(values)
    return FinetuneParams.checked(values)


def base_encoder_of(settings: Settings, project: Project) -> str:
    """The encoder to fine-tune: the project's, or the base of its fine-tuned one (a second
    fine-tuning starts again from the shipped weights, on all the labels)."""
    from labella.learners.finetune import _BASE_MODELS

    name = project.encoder
    parsed = parse_encoder_name(name)
    if parsed is not None:
        sidecar = read_sidecar(encoder_dir(settings, *parsed))
        name = str(sidecar["base_encoder"]) if sidecar else name
    bases = IMAGE_BASES if project.kind == ProjectKind.IMAGE_CLASSIFICATION else _BASE_MODELS
    if name not in bases:
        raise InvalidInput(
            f"project {project.name!r} uses encoder {project.encoder!r}, which cannot be "
            f"fine-tuned; fine-tunable encoders: {', '.join(sorted(bases))}"
        )
    return name


def kind_problem(kind: str, *, multi_label: bool, name: str) -> str | None:
    """Why a project of this kind cannot have its encoder fine-tuned, in words; None if it can."""
    if kind not in (ProjectKind.TEXT_CLASSIFICATION, ProjectKind.IMAGE_CLASSIFICATION):
        return (
            f"fine-tuning the encoder works on text and image classification projects; project "
            f"{name!r} is a {str(kind).replace('_', ' ')} project"
        )
    if multi_label:
        return (
            f"fine-tuning the encoder of a multi-label project is not supported yet; project "
            f"{name!r} is multi-label (train its head with POST /train instead)"
        )
    return None


def check_project_kind(project: Project) -> None:
    problem = kind_problem(project.kind, multi_label=project.multi_label, name=project.name)
    if problem is not None:
        raise InvalidInput(problem)


def fine_tunable_bases(kind: str) -> tuple[str, ...]:
    """The shipped encoders a project of ``kind`` can fine-tune."""
    from labella.learners.finetune import _BASE_MODELS

    return IMAGE_BASES if kind == ProjectKind.IMAGE_CLASSIFICATION else tuple(_BASE_MODELS)


def encoder_problem(kind: str, encoder: str) -> str | None:
    """Why ``encoder`` cannot be fine-tuned in a project of ``kind``; None when it can. A name a
    finetune job gave is fine-tunable: only a fine-tunable base is ever fine-tuned (the job
    starts again from that base, :func:`base_encoder_of`)."""
    if parse_encoder_name(encoder) is not None:
        return None
    bases = fine_tunable_bases(kind)
    if encoder in bases:
        return None
    return f"encoder {encoder!r} cannot be fine-tuned; fine-tunable encoders: {', '.join(bases)}"


def readiness_problem(rows: Any, project: Project) -> str | None:
    """Why the human labels cannot fine-tune the encoder yet, in words; None when they can."""
    counts = rows.class_counts()
    enough = [n for n in counts if n >= MIN_LABELS_PER_CLASS]
    if len(enough) >= MIN_CLASSES:
        return None
    have = ", ".join(f"{name} {n}" for name, n in zip(rows.class_names, counts, strict=True))
    waiting = (
        f"; {rows.n_unembedded} more labeled items are still being encoded"
        if rows.n_unembedded
        else ""
    )
    return (
        f"fine-tuning the encoder needs at least {MIN_LABELS_PER_CLASS} human labels in each of "
        f"at least {MIN_CLASSES} classes (the evaluation sample's labels do not count); project "
        f"{project.name!r} has {have}{waiting}"
    )


def _training_rows(session: Session, project: Project) -> Any:
    """The human labels that may train: the evaluation sample's are held out, as in training."""
    from labella.services.evaluation import split_eval_rows
    from labella.services.training import load_labeled_rows

    rows, _ = split_eval_rows(session, project, load_labeled_rows(session, project))
    return rows


def _active_finetune(session: Session, project_id: int) -> Job | None:
    return session.scalar(
        select(Job)
        .where(
            Job.project_id == project_id,
            Job.kind == FINETUNE_JOB,
            Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
        )
        .order_by(Job.id)
        .limit(1)
    )


def request_finetune(
    db: Database,
    settings: Settings,
    project_id: int,
    *,
    params: dict[str, Any] | None = None,
    actor: str = "system",
) -> Job:
    """Queue a fine-tuning job (or return the one queued or running); InvalidInput (422) for a
    project that cannot be fine-tuned, NotReady (409) when the labels are not enough yet."""
    with db.transaction() as session:
        project = repo.get_project(session, project_id, for_update=True)
        check_project_kind(project)
        checked = params_for(project, params)
        base_encoder_of(settings, project)
        problem = readiness_problem(_training_rows(session, project), project)
        if problem is not None:
            raise NotReady(problem)
        active = _active_finetune(session, project_id)
        if active is not None:
            return active
        return _enqueue_finetune(session, project_id, checked, actor=actor)


def _enqueue_finetune(
    session: Session,
    project_id: int,
    checked: FinetuneParams | ImageFinetuneParams,
    *,
    actor: str,
    auto: dict[str, int] | None = None,
) -> Job:
    """Queue the job and audit the request, in the caller's transaction; ``auto`` (what the
    automatic policy saw) marks a job that no one asked for."""
    meta: dict[str, Any] = {"actor": actor}
    if auto is not None:
        meta["auto_labels"] = auto["n_labels"]
    job = queue.enqueue(
        session,
        kind=FINETUNE_JOB,
        project_id=project_id,
        params={**checked.as_dict(), **meta},
    )
    from labella.services import audit

    audit.record(
        session,
        actor=actor,
        action="finetune.request",
        project_id=project_id,
        detail={
            "job_id": job.id,
            **checked.as_dict(),
            **({"trigger": "auto", **auto} if auto is not None else {}),
        },
    )
    return job


# -- fine-tuning by itself ------------------------------------------------------------------------

AUTO_FINETUNE_MAX = 1_000_000


def default_auto_finetune_at(
    kind: str, *, multi_label: bool, encoder: str, settings_value: int
) -> int:
    """The ``auto_finetune_at`` of a new project that does not set it: ``settings_value``
    (``LABELLA_AUTO_FINETUNE_AT``) for a text classification project on a fine-tunable encoder,
    0 (off) for everything else. Image projects are off by default because fine-tuning
    EfficientNet on a CPU takes ~25 minutes per 1,000 labels; a single-label one may turn it on."""
    if kind != ProjectKind.TEXT_CLASSIFICATION:
        return 0
    if kind_problem(kind, multi_label=multi_label, name="") is not None:
        return 0
    return settings_value if encoder_problem(kind, encoder) is None else 0


def check_auto_finetune_at(
    value: int, *, kind: str, multi_label: bool, encoder: str, name: str
) -> int:
    """``value`` if a project of this kind and encoder may use it as ``auto_finetune_at``, else
    InvalidInput (422) naming the setting and the reason."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= AUTO_FINETUNE_MAX:
        raise InvalidInput(
            f"auto_finetune_at must be a whole number of labels from 0 (off) to "
            f"{AUTO_FINETUNE_MAX}, got {value!r}"
        )
    if value:
        problem = kind_problem(kind, multi_label=multi_label, name=name) or encoder_problem(
            kind, encoder
        )
        if problem is not None:
            raise InvalidInput(f"auto_finetune_at must be 0 (off) for project {name!r}: {problem}")
    return value


def _last_basis(session: Session, project_id: int) -> int | None:
    """Usable labels the automatic policy counts from: those the newest successful fine-tuning
    was trained on, or the count at which an automatic one was queued and then failed or was
    cancelled (so a cancel or a failure is not retried at every label, only once the labels
    double again); 0 when there is none; None while a fine-tuning is queued or running."""
    jobs = session.scalars(
        select(Job)
        .where(Job.project_id == project_id, Job.kind == FINETUNE_JOB)
        .order_by(Job.id.desc())
        .limit(50)
    )
    for job in jobs:
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            return None
        if job.status == JobStatus.SUCCEEDED:
            return int((job.result or {}).get("n_labels") or 0)
        auto_labels = (job.params or {}).get("auto_labels")
        if auto_labels is not None:
            return int(auto_labels)
    return 0


def auto_finetune_target(project: Project, basis: int) -> int:
    """Usable human labels at which the policy fine-tunes next: ``auto_finetune_at``, and at
    least twice the labels of the last fine-tuning (250, 500, 1,000, ...)."""
    return max(int(project.auto_finetune_at), 2 * basis)


def maybe_schedule_finetune(
    session: Session, project: Project, *, n_labels: int | None = None
) -> Job | None:
    """Queue an automatic fine-tuning of the project's encoder when its human labels reached
    ``project.auto_finetune_at`` (and, after a fine-tuning, once they have doubled since);
    returns the new job, else None.

    Runs inside the caller's transaction (a label being committed; ``n_labels``: its count of
    current human labels, if it has one) and is cheap below the target: a count, then one small
    query. It never raises for a project that cannot be fine-tuned now, it skips: the policy is
    off, the project's kind or encoder cannot be fine-tuned, a fine-tuning is queued or running,
    or the labels are not enough (:func:`readiness_problem`).
    """
    if project.auto_finetune_at <= 0:
        return None
    if kind_problem(project.kind, multi_label=project.multi_label, name=project.name):
        return None
    if encoder_problem(project.kind, project.encoder) is not None:
        return None
    if n_labels is None:
        n_labels = repo.count_human_labels(session, project.id)
    if n_labels < project.auto_finetune_at:
        return None
    basis = _last_basis(session, project.id)
    if basis is None or n_labels < auto_finetune_target(project, basis):
        return None
    rows = _training_rows(session, project)
    if rows.n_usable < auto_finetune_target(project, basis):
        return None
    if readiness_problem(rows, project) is not None:
        return None
    # two labels committed at once must not queue two fine-tunings: the second waits for the
    # first's lock on the project row, then sees its job (SQLite serialises writers anyway)
    repo.get_project(session, project.id, for_update=True)
    if _active_finetune(session, project.id) is not None:
        return None
    return _enqueue_finetune(
        session,
        project.id,
        params_for(project, None),
        actor="system",
        auto={
            "n_labels": rows.n_usable,
            "auto_finetune_at": int(project.auto_finetune_at),
            "previous_labels": basis,
        },
    )


# -- the job --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneResult:
    encoder: str
    previous_encoder: str
    base_encoder: str
    n_labels: int
    n_pairs: int
    epochs: int
    fit_seconds: float
    n_encoded: int
    n_items: int
    followup: str
    followup_job_id: int | None
    reused: bool
    seconds: float
    modality: str = "text"
    image_size: int | None = None
    n_skipped: int = 0
    """Labelled images left out of the fine-tuning: their file is gone, changed or unreadable."""
    method: str | None = None
    """Text: how the encoder was fine-tuned ("classifier" or "setfit"); None for images."""
    members: int = 1
    """Text: copies of the encoder fine-tuned side by side."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "method": self.method,
            "members": self.members,
            "image_size": self.image_size,
            "n_skipped": self.n_skipped,
            "encoder": self.encoder,
            "previous_encoder": self.previous_encoder,
            "base_encoder": self.base_encoder,
            "n_labels": self.n_labels,
            "n_pairs": self.n_pairs,
            "epochs": self.epochs,
            "fit_seconds": round(self.fit_seconds, 3),
            "n_encoded": self.n_encoded,
            "n_items": self.n_items,
            "followup": self.followup,
            "followup_job_id": self.followup_job_id,
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
        }


# progress scale: 0-5 labels, 5-70 fine-tuning, 70-95 encoding the items, 95-100 switching
_FIT, _ENCODE, _SWITCH = 5, 70, 95


def _texts_of(session: Session, item_ids: Sequence[int]) -> dict[int, str]:
    texts: dict[int, str] = {}
    for start in range(0, len(item_ids), _IN_BATCH):
        batch = list(item_ids[start : start + _IN_BATCH])
        texts.update(
            (int(i), t or "")
            for i, t in session.execute(select(Item.id, Item.text).where(Item.id.in_(batch)))
        )
    return texts


def _fit_and_save(
    settings: Settings,
    directory: Path,
    *,
    name: str,
    project_id: int,
    job_id: int,
    base: str,
    texts: list[str],
    y: np.ndarray,
    class_ids: list[int],
    params: FinetuneParams,
    progress: ProgressReporter,
    note: str,
) -> dict[str, Any]:
    learner = _text_learner(base, params, random_state=settings.random_seed)
    if params.method == "setfit":
        n_pairs = min(2 * (params.n_iterations or 0) * len(texts), params.max_pairs or 0)
        examples, unit = n_pairs, "pairs"
        what = f"{n_pairs} sentence pairs (SetFit)"
    else:
        examples, unit = len(texts), "labels"
        what = "as a classifier, end to end"
    if params.members > 1:
        what += f", {params.members} copies side by side"
    steps = params.members * params.epochs * math.ceil(examples / params.batch_size)
    progress(
        _FIT,
        100,
        f"{note}fine-tuning {base} on {len(texts)} labels {what}, {params.epochs} epoch(s), "
        f"{steps} steps (minutes on a CPU)",
        force=True,
    )

    def report(done: int, total: int) -> None:
        per_copy = max(total // params.members, 1)
        copy, step = divmod(done - 1, per_copy)
        epoch = min(params.epochs, 1 + step * params.epochs // per_copy)
        of_copy = f"copy {copy + 1} of {params.members}, " if params.members > 1 else ""
        progress(
            _FIT + (_ENCODE - _FIT) * done // max(total, 1),
            100,
            f"{note}fine-tuning {base}: step {done} of {total} ({of_copy}epoch {epoch} of "
            f"{params.epochs}, {examples} {unit})",
        )

    learner.fit(texts, y, n_classes=len(class_ids), progress=report)
    learner.save(directory)
    dim = int(learner.dim_)
    sidecar = {
        "name": name,
        "dim": dim,
        "project_id": project_id,
        "job_id": job_id,
        "base_encoder": base,
        "method": params.method,
        "n_labels": len(texts),
        "n_pairs": examples if params.method == "setfit" else 0,
        "epochs": params.epochs,
        "n_iterations": params.n_iterations,
        "members": params.members,
        "class_ids": class_ids,
        "train_losses": [float(x) for x in learner.train_losses_],
        "fit_seconds": round(float(learner.fit_seconds_), 3),
    }
    _write_sidecar(directory, sidecar)
    return sidecar


def _text_learner(base: str, params: FinetuneParams, *, random_state: int) -> Any:
    from labella.learners.finetune import ClassifierFineTuner, SetFitLearner

    if params.method == "setfit":
        return SetFitLearner(
            base_encoder=base,
            n_iterations=params.n_iterations or METHOD_DEFAULTS["setfit"]["n_iterations"],
            epochs=params.epochs,
            batch_size=params.batch_size,
            max_pairs=params.max_pairs,
            n_members=params.members,
            random_state=random_state,
        )
    return ClassifierFineTuner(
        base_encoder=base,
        epochs=params.epochs,
        batch_size=params.batch_size,
        n_members=params.members,
        random_state=random_state,
    )


@dataclass
class _LabelImages:
    """Where the labelled images are and their class columns; read one at a time, so that only
    the small decoded pixels of the training set are held in memory, not every photo's file."""

    pending: list[_Pending]
    y: list[int]


def _label_images(db: Database, rows: Any) -> _LabelImages:
    with db.reader() as session:
        uris: dict[int, str | None] = {}
        for start in range(0, len(rows.item_ids), _IN_BATCH):
            batch = list(rows.item_ids[start : start + _IN_BATCH])
            uris.update(
                (int(i), uri)
                for i, uri in session.execute(
                    select(Item.id, Item.media_uri).where(Item.id.in_(batch))
                )
            )
    pending = [
        _Pending(item_id, key, "", uris.get(item_id))
        for item_id, key in zip(rows.item_ids, rows.keys, strict=True)
    ]
    return _LabelImages(pending=pending, y=[cols[0] for cols in rows.columns])


def _fit_and_save_image(
    settings: Settings,
    directory: Path,
    *,
    name: str,
    project_id: int,
    job_id: int,
    base: str,
    labels: _LabelImages,
    class_ids: list[int],
    params: ImageFinetuneParams,
    random_state: int | None,
    progress: ProgressReporter,
    note: str,
) -> dict[str, Any]:
    from labella.images import ImageProblem
    from labella.learners.image_encoders import LITE0_DIM
    from labella.learners.image_finetune import ImageFineTuner

    device, threads = torch_device(), _cpu_threads()
    learner = ImageFineTuner(
        image_size=params.image_size,
        epochs=params.epochs,
        batch_size=params.batch_size,
        random_state=random_state,
        device=device,
        num_threads=threads,
    )
    # read and decoded one by one: an image whose file is gone, changed on disk since its
    # import, or cannot be decoded is named by its item and left out; the others go on
    reader = _ImageReader(settings)
    skipped = reader.examples
    pixels, targets = [], []
    n_images = len(labels.pending)
    for index, (item, column) in enumerate(zip(labels.pending, labels.y, strict=True)):
        _, data = reader.read([item])
        if not data:
            continue
        try:
            pixels.append(learner.decode(data))
        except ImageProblem as exc:
            reader.unreadable += 1
            if len(skipped) < 20:
                skipped.append(f"item {item.item_id}: {str(exc).removeprefix('inputs[0]: ')}")
            continue
        targets.append(column)
        if index % 50 == 0:
            progress(
                _FIT * index // max(n_images, 1),
                100,
                f"{note}decoding the labelled images: {index} of {n_images}",
            )
    n_skipped = reader.unreadable
    if len(set(targets)) < MIN_CLASSES:
        raise NotReady(
            f"fine-tuning the encoder needs labelled images of at least {MIN_CLASSES} classes that "
            f"can be read; {n_skipped} could not ({'; '.join(skipped[:3])})"
        )
    import torch

    steps = params.epochs * math.ceil(len(targets) / params.batch_size)
    where = "a GPU" if device.startswith("cuda") else f"{threads} CPU thread(s)"
    progress(
        _FIT,
        100,
        f"{note}fine-tuning EfficientNet-Lite0 on {len(targets)} labelled images: "
        f"{params.epochs} epoch(s) at {params.image_size} px, {steps} steps on {where}"
        + (" (minutes to an hour on a CPU)" if where != "a GPU" else ""),
        force=True,
    )

    def report(done: int, total: int) -> None:
        epoch = min(params.epochs, 1 + (done - 1) * params.epochs // max(total, 1))
        progress(
            _FIT + (_ENCODE - _FIT) * done // max(total, 1),
            100,
            f"{note}fine-tuning EfficientNet-Lite0: step {done} of {total} (epoch {epoch} of "
            f"{params.epochs}, {len(targets)} images at {params.image_size} px)",
        )

    learner.fit(
        torch.cat(pixels),
        np.asarray(targets, dtype=np.int64),
        n_classes=len(class_ids),
        progress=report,
    )
    learner.save(directory)
    sidecar = {
        "name": name,
        "modality": "image",
        "dim": LITE0_DIM,
        "project_id": project_id,
        "job_id": job_id,
        "base_encoder": base,
        "n_labels": len(targets),
        "n_skipped": n_skipped,
        "skipped_examples": skipped,
        "epochs": params.epochs,
        "image_size": params.image_size,
        "batch_size": params.batch_size,
        "n_steps": steps,
        "device": device,
        "num_threads": threads,
        "class_ids": class_ids,
        "fit_seconds": round(float(learner.fit_seconds_), 3),
    }
    _write_sidecar(directory, sidecar)
    return sidecar


def _encode_items(
    db: Database,
    settings: Settings,
    project_id: int,
    name: str,
    *,
    progress: ProgressReporter,
    note: str,
) -> tuple[int, int]:
    """Every item of the project into the cache under ``name``; (items, vectors computed)."""
    from sqlalchemy import func

    from labella.learners.cache import embed_with_cache
    from labella.services.encoding import open_cache

    with db.reader() as session:
        total = int(session.scalar(select(func.count()).where(Item.project_id == project_id)) or 0)
    from labella.learners.encoders import IMAGE, encoder_modality

    encoder, cache = open_cache(settings, name)
    # image items: only the misses are read, and one that cannot be read stays out of the cache
    # (the switch then leaves it unembedded and the encode job it queues names it)
    images = _ImageReader(settings) if encoder_modality(name) == IMAGE else None
    done = computed = 0
    last_id = 0
    chunk = max(1, settings.encode_chunk)
    try:
        while True:
            with db.reader() as session:
                found = session.execute(
                    select(Item.id, Item.content_hash, Item.text, Item.media_uri)
                    .where(Item.project_id == project_id, Item.id > last_id)
                    .order_by(Item.id)
                    .limit(chunk)
                ).all()
            if not found:
                break
            last_id = int(found[-1].id)
            n_rows = len(found)
            inputs: list[Any]
            if images is not None:
                missing = set(cache.missing([str(row.content_hash) for row in found]))
                todo = [
                    _Pending(int(r.id), str(r.content_hash), "", r.media_uri)
                    for r in found
                    if r.content_hash in missing
                ]
                kept, inputs = images.read(todo)
                keys = [item.key for item in kept]
            else:
                keys = [str(row.content_hash) for row in found]
                inputs = [row.text or "" for row in found]
            computed += len(set(cache.missing(keys)))
            base = done

            def report(chunk_done: int, _total: int, base: int = base) -> None:
                fraction = (base + chunk_done) / max(total, 1)
                progress(
                    _ENCODE + int((_SWITCH - _ENCODE) * min(fraction, 1.0)),
                    100,
                    f"{note}encoding items with {name}: {base + chunk_done} of {total}",
                )

            embed_with_cache(
                encoder,
                cache,
                keys,
                inputs,
                batch_size=settings.encode_batch_size,
                progress=report,
                chunk=chunk,
            )
            done += n_rows
    finally:
        cache.close()
    return done, computed


def finetune_project(
    db: Database,
    settings: Settings,
    project_id: int,
    *,
    job_id: int,
    params: FinetuneParams | ImageFinetuneParams | None = None,
    progress: ProgressReporter = _no_progress,
    note: str = "",
    actor: str = "system",
) -> FinetuneResult:
    """Fine-tune the project's encoder on its human labels, re-encode its items with it, switch
    the project to it and queue a training (see the module's docstring)."""
    started = time.perf_counter()
    progress(0, 100, f"{note}loading the human labels", force=True)
    with db.reader() as session:
        project = repo.get_project(session, project_id)
        check_project_kind(project)
        is_image = project.kind == ProjectKind.IMAGE_CLASSIFICATION
        params = params or params_for(project, None)
        if isinstance(params, ImageFinetuneParams) != is_image:
            raise InvalidInput(
                f"{type(params).__name__} cannot fine-tune project {project.name!r} "
                f"({str(project.kind).replace('_', ' ')})"
            )
        base = base_encoder_of(settings, project)
        rows = _training_rows(session, project)
        problem = readiness_problem(rows, project)
        if problem is not None:
            raise NotReady(problem)
        texts_by_id = {} if is_image else _texts_of(session, rows.item_ids)
    directory = encoder_dir(settings, project_id, job_id)
    sidecar = read_sidecar(directory)
    reused = sidecar is not None
    if sidecar is not None:
        name = str(sidecar["name"])
    elif isinstance(params, ImageFinetuneParams):
        name = encoder_name(project_id, job_id, secrets.token_hex(4), modality="image")
        sidecar = _fit_and_save_image(
            settings,
            directory,
            name=name,
            project_id=project_id,
            job_id=job_id,
            base=base,
            labels=_label_images(db, rows),
            class_ids=rows.class_ids,
            params=params,
            random_state=settings.random_seed,
            progress=progress,
            note=note,
        )
    else:
        name = encoder_name(project_id, job_id, secrets.token_hex(4))
        sidecar = _fit_and_save(
            settings,
            directory,
            name=name,
            project_id=project_id,
            job_id=job_id,
            base=base,
            texts=[texts_by_id[i] for i in rows.item_ids],
            y=np.asarray([cols[0] for cols in rows.columns], dtype=np.int64),
            class_ids=rows.class_ids,
            params=params,
            progress=progress,
            note=note,
        )
    if not ensure_registered(settings, name):
        raise RuntimeError(f"the fine-tuned encoder saved in {directory} cannot be loaded")
    progress(_ENCODE, 100, f"{note}encoding the items with {name}", force=True)
    n_items, n_encoded = _encode_items(db, settings, project_id, name, progress=progress, note=note)
    progress(_SWITCH, 100, f"{note}switching the project to {name}", force=True)
    previous, followup, followup_job = _switch(
        db,
        settings,
        project_id,
        name,
        actor=actor,
        action="encoder.finetune",
        detail={
            "job_id": job_id,
            "base_encoder": base,
            "method": _method_of(sidecar),
            "members": sidecar.get("members"),
            "n_labels": sidecar.get("n_labels"),
            "n_pairs": sidecar.get("n_pairs"),
            "epochs": sidecar.get("epochs"),
            "image_size": sidecar.get("image_size"),
            "fit_seconds": sidecar.get("fit_seconds"),
            "n_items_encoded": n_encoded,
        },
        reason=f"encoder fine-tuned by job {job_id}",
        finetune_job_id=job_id,
    )
    progress(100, 100, f"{note}switched to {name}; {followup}", force=True)
    return FinetuneResult(
        encoder=name,
        previous_encoder=previous,
        base_encoder=base,
        n_labels=int(sidecar.get("n_labels") or 0),
        n_pairs=int(sidecar.get("n_pairs") or 0),
        epochs=int(sidecar.get("epochs") or 0),
        fit_seconds=float(sidecar.get("fit_seconds") or 0.0),
        n_encoded=n_encoded,
        n_items=n_items,
        followup=followup,
        followup_job_id=followup_job,
        reused=reused,
        seconds=time.perf_counter() - started,
        modality="image" if is_image else "text",
        image_size=int(sidecar["image_size"]) if is_image else None,
        n_skipped=int(sidecar.get("n_skipped") or 0),
        method=_method_of(sidecar),
        members=int(sidecar.get("members") or 1),
    )


def _method_of(sidecar: dict[str, Any]) -> str | None:
    """How a saved encoder was fine-tuned; text encoders saved before there was a choice of
    method were all SetFit's."""
    if sidecar.get("modality") == "image":
        return None
    return str(sidecar.get("method", "setfit"))


@executor(FINETUNE_JOB)
def run_finetune_job(context: JobContext) -> dict[str, Any]:
    if context.project_id is None:
        raise ValueError("a finetune_encoder job needs a project")
    note = resume_note(context)
    if context.params.get("auto_labels") is not None:
        # queued by maybe_schedule_finetune, not by a person: the dashboard says why it runs
        note += f"automatic, at {context.params['auto_labels']} labels: "
    with context.db.reader() as session:
        params = params_for(repo.get_project(session, context.project_id), context.params)
    try:
        result = finetune_project(
            context.db,
            context.settings,
            context.project_id,
            job_id=context.job_id,
            params=params,
            progress=context.progress,
            note=note,
            actor=str(context.params.get("actor") or "system"),
        )
    except JobCancelled:
        _discard_unused(context.db, context.settings, context.project_id, context.job_id)
        raise
    if result.modality == "image":
        skipped = (
            f"; {result.n_skipped} labelled images could not be read and were left out"
            if result.n_skipped
            else ""
        )
        what = (
            f"fine-tuned EfficientNet-Lite0 (from {result.base_encoder}) on {result.n_labels} "
            f"labelled images ({result.epochs} epoch(s) at {result.image_size} px, "
            f"{result.fit_seconds:.0f} s){skipped}"
        )
    else:
        what = (
            f"fine-tuned {result.base_encoder} on {result.n_labels} labels "
            f"({_method_words(result)}, {result.epochs} epoch(s), {result.fit_seconds:.0f} s)"
        )
    message = (
        f"{note}{what}{' (reused the saved encoder)' if result.reused else ''}; project "
        f"switched to {result.encoder}; {result.n_items} items encoded; {result.followup}"
    )
    return {**result.as_dict(), "message": message}


def _method_words(result: FinetuneResult) -> str:
    words = (
        f"SetFit, {result.n_pairs} pairs"
        if result.method == "setfit"
        else "end to end as a classifier"
    )
    return words + (f", {result.members} copies side by side" if result.members > 1 else "")


def _discard_unused(db: Database, settings: Settings, project_id: int, job_id: int) -> None:
    """Delete what a cancelled job saved (a fine-tuned model is ~90 MB) unless the project
    switched to it before the cancel arrived."""
    directory = encoder_dir(settings, project_id, job_id)
    sidecar = read_sidecar(directory)
    with db.reader() as session:
        project = session.get(Project, project_id)
        in_use = (
            project is not None and sidecar is not None and project.encoder == sidecar.get("name")
        )
    if not in_use:
        shutil.rmtree(directory, ignore_errors=True)


# -- switching encoders ---------------------------------------------------------------------------


def _sync_embedded_flags(
    session: Session, settings: Settings, project_id: int, name: str
) -> tuple[int, int]:
    """Flag each item embedded exactly when the cache of ``name`` holds its vector (the flag
    means "embedded by the project's encoder"); returns (items with a vector, items without)."""
    from labella.services.encoding import open_cache

    rows = session.execute(
        select(Item.id, Item.content_hash, Item.embedded)
        .where(Item.project_id == project_id)
        .order_by(Item.id)
    ).all()
    _, cache = open_cache(settings, name)
    try:
        missing = set(cache.missing([str(row.content_hash) for row in rows]))
    finally:
        cache.close()
    has_vector = [row.content_hash not in missing for row in rows]
    for flag in (True, False):
        # only the flags that change: a switch back to a fully cached encoder writes nothing
        ids = [
            int(row.id)
            for row, has in zip(rows, has_vector, strict=True)
            if has == flag and bool(row.embedded) != flag
        ]
        for start in range(0, len(ids), _IN_BATCH):
            batch = ids[start : start + _IN_BATCH]
            session.execute(update(Item).where(Item.id.in_(batch)).values(embedded=flag))
    n_with = sum(has_vector)
    return n_with, len(rows) - n_with


def _switch(
    db: Database,
    settings: Settings,
    project_id: int,
    name: str,
    *,
    actor: str,
    action: str,
    detail: dict[str, Any],
    reason: str,
    finetune_job_id: int | None = None,
) -> tuple[str, str, int | None]:
    """Point the project at encoder ``name`` and queue what brings its model up to date:
    (previous encoder, what was queued in words, that job's id). With ``finetune_job_id`` (the
    job switching), JobCancelled if that job was cancelled meanwhile: the project then stays on
    its encoder."""
    from labella.services import audit, training

    with db.transaction() as session:
        if finetune_job_id is not None:
            _stop_if_cancelled(session, finetune_job_id)
        project = repo.get_project(session, project_id, for_update=True)
        previous = project.encoder
        project.encoder = name
        _, n_missing = _sync_embedded_flags(session, settings, project_id, name)
        audit.record(
            session,
            actor=actor,
            action=action,
            project_id=project_id,
            detail={"from": previous, "to": name, **detail},
        )
        session.flush()
        if n_missing:
            # the encode job embeds them, then trains (services.encoding._after_encoding)
            job = queue.enqueue(session, kind=ENCODE_JOB, project_id=project_id)
            followup = f"queued encode job {job.id} for {n_missing} items, then training"
        else:
            rows = training.load_labeled_rows(session, project)
            if training.readiness_problem(rows, project) is None:
                job = training.enqueue_training(session, project_id, reason=reason)
                followup = f"queued training job {job.id} on the new vectors"
            else:
                from labella.services.ranking import RANK_JOB

                job = queue.enqueue(session, kind=RANK_JOB, project_id=project_id)
                followup = f"queued ranking job {job.id} on the new vectors"
        job_id = int(job.id)
    # the k-means clusters of the pool were fitted on the old vectors
    from labella.services.ranking import clusters_path

    clusters_path(settings, project_id).unlink(missing_ok=True)
    return previous, followup, job_id


def _stop_if_cancelled(session: Session, job_id: int) -> None:
    query = select(Job.status).where(Job.id == job_id)
    if session.get_bind().dialect.name == "postgresql":
        # a cancel either commits before this switch (and stops it) or waits for it to commit
        query = query.with_for_update()
    if session.scalar(query) == JobStatus.CANCELLED:
        raise JobCancelled()


def check_encoder_choice(settings: Settings, project: Project, name: str) -> str:
    """The encoder ``name`` (stripped) if ``project`` may switch to it, else InvalidInput (422)
    listing the ones it may use."""
    from labella.learners.encoders import encoder_modality, encoder_names
    from labella.services.projects import KIND_MODALITY

    name = name.strip()
    modality = KIND_MODALITY[str(project.kind)]
    parsed = parse_encoder_name(name)
    if parsed is not None and parsed[0] != project.id:
        raise InvalidInput(
            f"encoder {name!r} was fine-tuned for project {parsed[0]}, not for project "
            f"{project.name!r}"
        )
    ensure_registered(settings, name)
    try:
        found = encoder_modality(name) if name else None
    except ValueError:
        found = None
    if found != modality:
        own = [
            n
            for n in encoder_names(modality)
            if (p := parse_encoder_name(n)) is None or p[0] == project.id
        ]
        raise InvalidInput(
            f"unknown {modality} encoder {name!r} for project {project.name!r}; "
            f"it can use: {', '.join(own)}"
        )
    return name


def switch_encoder(
    db: Database, settings: Settings, project_id: int, name: str, *, actor: str = "system"
) -> Project:
    """Switch the project to another registered encoder of its modality (back to the base
    encoder after a fine-tuning, say): the items are re-flagged by what that encoder's cache
    holds, missing ones are encoded and a training on the new vectors is queued."""
    with db.reader() as session:
        project = repo.get_project(session, project_id)
    name = check_encoder_choice(settings, project, name)
    if name != project.encoder:
        _switch(
            db,
            settings,
            project_id,
            name,
            actor=actor,
            action="project.encoder",
            detail={},
            reason=f"encoder switched to {name}",
        )
    with db.reader() as session:
        return repo.get_project(session, project_id)
