"""SQLAlchemy 2 models. The schema is owned by the Alembic migrations in ``storage/migrations``;
keep the two in step (tests/storage/test_migrations.py compares them).

Labels are append-only: a new label for an item marks the previous one superseded, so the full
history (who, when, human or model, which model version) stays queryable.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


MAX_ID = 2**31 - 1
"""The largest row id or count a column holds everywhere: integers are 32-bit on PostgreSQL. The
drivers raise on a larger one (SQLite on one beyond 64 bits), so inputs are checked against it."""

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class ProjectKind(enum.StrEnum):
    TEXT_CLASSIFICATION = "text_classification"
    IMAGE_CLASSIFICATION = "image_classification"
    OBJECT_DETECTION = "object_detection"


class ItemStatus(enum.StrEnum):
    UNLABELED = "unlabeled"
    LABELED = "labeled"  # current label is a human's
    AUTO = "auto"  # current label is the model's (auto-label)
    SKIPPED = "skipped"
    IN_REVIEW = "in_review"  # its overlapping answers disagree with no majority: a reviewer decides


class LabelKind(enum.StrEnum):
    LABEL = "label"
    ANSWER = "answer"


class DecidedBy(enum.StrEnum):
    CONSENSUS = "consensus"  # every answer agreed
    MAJORITY = "majority"  # more than half of the answers agreed
    REVIEWER = "reviewer"  # a reviewer chose it (a disagreement, or a change in review)


class LabelSource(enum.StrEnum):
    HUMAN = "human"
    MODEL = "model"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


UTCDateTime = DateTime(timezone=True)


class Project(Base):
    __tablename__ = "project"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(40), default=ProjectKind.TEXT_CLASSIFICATION)
    multi_label: Mapped[bool] = mapped_column(Boolean, default=False)
    strategy: Mapped[str] = mapped_column(String(60), default="cluster_margin")
    strategy_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    encoder: Mapped[str] = mapped_column(String(100), default="all-MiniLM-L6-v2")
    head: Mapped[str] = mapped_column(String(40), default="linear")
    retrain_every: Mapped[int] = mapped_column(Integer, default=50)
    # Labels between two online (incremental) updates of the model; 0 turns them off.
    online_update_every: Mapped[int] = mapped_column(Integer, default=1)
    # What one human label costs, for the stopping signal's "money saved" (0: not set).
    cost_per_label: Mapped[float] = mapped_column(Float, default=0.0)
    # Overlap (services.assignment): a share of the items is answered by `overlap` annotators
    # each, and their answers decide the label; 1 means every item is labeled once.
    overlap: Mapped[int] = mapped_column(Integer, default=1)
    overlap_share: Mapped[float] = mapped_column(Float, default=1.0)
    # Share of each annotator's single labels queued for a reviewer as a work sample.
    review_sample_share: Mapped[float] = mapped_column(Float, default=0.0)
    # Human labels at which the encoder is first fine-tuned by itself (services.finetuning),
    # then again each time they double; 0: never (projects made before this setting existed).
    auto_finetune_at: Mapped[int] = mapped_column(Integer, default=0)
    # Training also learns from the model's confident predictions on the unlabeled items
    # (learners.self_training); off for projects made before this setting existed.
    self_training: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    classes: Mapped[list[LabelClass]] = relationship(
        back_populates="project", order_by="LabelClass.position", cascade="all, delete-orphan"
    )


class LabelClass(Base):
    __tablename__ = "label_class"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    color: Mapped[str] = mapped_column(String(20), default="")
    shortcut: Mapped[str] = mapped_column(String(10), default="")

    project: Mapped[Project] = relationship(back_populates="classes")


class Item(Base):
    __tablename__ = "item"
    __table_args__ = (
        UniqueConstraint("project_id", "content_hash"),
        # serves the next batch: unlabeled items of a project, highest priority first
        Index("ix_item_queue", "project_id", "status", "priority"),
        Index("ix_item_random", "project_id", "status", "random_key"),
        # finds the auto-label audit sample without walking every auto-labeled item
        Index("ix_item_audit", "project_id", "audit_sample", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    media_uri: Mapped[str | None] = mapped_column(Text, default=None)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    content_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default=ItemStatus.UNLABELED)
    # Ranking written by the strategy after each training (or cold start); higher is served first.
    priority: Mapped[float | None] = mapped_column(Float, default=None)
    priority_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    random_key: Mapped[float] = mapped_column(Float)
    embedded: Mapped[bool] = mapped_column(Boolean, default=False)
    # Drawn uniformly from the pool for unbiased evaluation (active-learning picks are biased);
    # labeled like any other item, interleaved with the queue.
    eval_sample: Mapped[bool] = mapped_column(Boolean, default=False)
    # An auto-labeled item queued for a human check of the auto-labels' precision.
    audit_sample: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    leased_by: Mapped[str | None] = mapped_column(String(200), default=None)
    import_id: Mapped[int | None] = mapped_column(ForeignKey("import_record.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Label(Base):
    __tablename__ = "label"
    __table_args__ = (
        Index("ix_label_item_current", "item_id", "is_current"),
        Index("ix_label_project_current", "project_id", "is_current", "source"),
        # the annotator dashboard: one annotator's answers in a project over time
        Index("ix_label_annotator", "project_id", "annotator", "created_at"),
        # a client's retry of the same answer (lost response) finds the label it already made
        UniqueConstraint("item_id", "request_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(10))
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    annotator: Mapped[str | None] = mapped_column(String(200), default=None)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL"), default=None
    )
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # "label": the item's label (current or superseded); "answer": one annotator's answer to an
    # overlapped item, never current itself: the item's label is decided from the answers.
    kind: Mapped[str] = mapped_column(String(10), default=LabelKind.LABEL)
    # How a label made from several answers was decided (DecidedBy); null for one source's own
    # label (an annotator's, the model's, an import's).
    decided_by: Mapped[str | None] = mapped_column(String(20), default=None)

    values: Mapped[list[LabelValue]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    # an object-detection label's boxes (migration 0007); empty for classification labels
    boxes: Mapped[list[LabelBox]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="LabelBox.id"
    )


class LabelValue(Base):
    """One class of a label (one row for single-label, any number for multi-label)."""

    __tablename__ = "label_value"

    label_id: Mapped[int] = mapped_column(
        ForeignKey("label.id", ondelete="CASCADE"), primary_key=True
    )
    class_id: Mapped[int] = mapped_column(
        ForeignKey("label_class.id", ondelete="RESTRICT"), primary_key=True, index=True
    )


class ModelVersion(Base):
    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("project_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    head: Mapped[str] = mapped_column(String(40))
    encoder: Mapped[str] = mapped_column(String(100))
    n_labels: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifact_path: Mapped[str] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("job.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Prediction(Base):
    """The newest model's prediction for an item (one row per item, replaced by each training)."""

    __tablename__ = "prediction"
    __table_args__ = (Index("ix_prediction_project_conf", "project_id", "confidence"),)

    item_id: Mapped[int] = mapped_column(
        ForeignKey("item.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_version.id", ondelete="CASCADE")
    )
    probs: Mapped[list[Any]] = mapped_column(JSON)
    predicted: Mapped[list[Any]] = mapped_column(JSON)  # class ids the model predicts
    confidence: Mapped[float] = mapped_column(Float)
    # a detector's boxes {class_id, x_min, y_min, x_max, y_max, score} in image pixels (issue 8)
    boxes: Mapped[list[Any] | None] = mapped_column(JSON, default=None)


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (Index("ix_job_status", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), default=None, index=True
    )
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.QUEUED)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class ImportRecord(Base):
    """One import of a file into a project: what came in and what was reported."""

    __tablename__ = "import_record"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(500))
    format: Mapped[str] = mapped_column(String(20))
    rows: Mapped[int] = mapped_column(Integer, default=0)
    items_created: Mapped[int] = mapped_column(Integer, default=0)
    labels_created: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FlagStatus(enum.StrEnum):
    OPEN = "open"
    KEPT = "kept"  # the reviewer confirmed the label
    CHANGED = "changed"  # the reviewer gave a new label (it supersedes the flagged one)


class LabelFlag(Base):
    """An entry of the review queue. ``kind``: "suspect_label" (a human label the model
    confidently disagrees with, services.label_qa), "disagreement" (the answers to an overlapped
    item disagree) or "work_sample" (a random share of each annotator's labels)."""

    __tablename__ = "label_flag"
    __table_args__ = (Index("ix_label_flag_queue", "project_id", "status", "score"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    # None for a disagreement without a majority: there is no label yet, the reviewer decides
    label_id: Mapped[int | None] = mapped_column(
        ForeignKey("label.id", ondelete="CASCADE"), default=None
    )
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_version.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[str] = mapped_column(String(40), default="suspect_label")
    score: Mapped[float] = mapped_column(Float)
    suggested_class_id: Mapped[int | None] = mapped_column(
        ForeignKey("label_class.id", ondelete="SET NULL"), default=None
    )
    status: Mapped[str] = mapped_column(String(20), default=FlagStatus.OPEN)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(200), default=None)
    resolution_label_id: Mapped[int | None] = mapped_column(
        ForeignKey("label.id", ondelete="SET NULL"), default=None
    )


class ItemAssignment(Base):
    """One annotator's share of an overlapped item (migration 0006): leased to them while
    ``lease_until`` is ahead, answered once ``answered_at`` is set. ``item.leased_by`` holds one
    name, so items that several annotators answer keep their leases here."""

    __tablename__ = "item_assignment"
    __table_args__ = (UniqueConstraint("item_id", "annotator"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"))
    annotator: Mapped[str] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- accounts, memberships and the audit log (issue 7, migration 0005) ---------------------------
class ProjectRole(enum.StrEnum):
    OWNER = "owner"
    MANAGER = "manager"
    REVIEWER = "reviewer"
    ANNOTATOR = "annotator"


class UserAccount(Base):
    """A person (or a script's identity) who signs in. ``is_admin`` marks a site administrator:
    they create users and projects and act as owner of every project."""

    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProjectMember(Base):
    __tablename__ = "project_member"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A bearer token for scripts and the CLI; only the SHA-256 of its secret is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class AuthSession(Base):
    """A browser sign-in; the cookie holds the secret, the table only its SHA-256."""

    __tablename__ = "auth_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class LoginAttempt(Base):
    """One sign-in attempt, kept for the failed-login rate limit (old rows are pruned)."""

    __tablename__ = "login_attempt"
    __table_args__ = (
        Index("ix_login_attempt_username", "username", "created_at"),
        Index("ix_login_attempt_client", "client", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(200))
    client: Mapped[str] = mapped_column(String(100))
    succeeded: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """Who did what, when. Ids are plain integers, not foreign keys: the log outlives what it
    describes (a deleted project or item keeps its history)."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_project", "project_id", "created_at"),
        Index("ix_audit_event_item", "item_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(Integer, default=None)
    item_id: Mapped[int | None] = mapped_column(Integer, default=None)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(60))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- object detection (issue 8, migration 0007) ---------------------------------------------------
class LabelBox(Base):
    """One bounding box of a detection label, in image pixels (``x_min <= x_max``,
    ``y_min <= y_max``). ``score`` is the model's confidence; None for a human's box."""

    __tablename__ = "label_box"

    id: Mapped[int] = mapped_column(primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("label.id", ondelete="CASCADE"), index=True)
    class_id: Mapped[int] = mapped_column(
        ForeignKey("label_class.id", ondelete="RESTRICT"), index=True
    )
    x_min: Mapped[float] = mapped_column(Float)
    y_min: Mapped[float] = mapped_column(Float)
    x_max: Mapped[float] = mapped_column(Float)
    y_max: Mapped[float] = mapped_column(Float)
    score: Mapped[float | None] = mapped_column(Float, default=None)
