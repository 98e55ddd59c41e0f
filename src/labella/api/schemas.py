"""HTTP request and response bodies. The domain never imports these; routes convert."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ClassIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    color: str = ""
    shortcut: str = ""


class ClassOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    position: int
    color: str
    shortcut: str


class ClassPatch(BaseModel):
    name: str | None = None
    color: str | None = None
    shortcut: str | None = None


class ProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: str = "text_classification"
    multi_label: bool = False
    classes: list[ClassIn | str] = Field(min_length=1)
    description: str = ""
    strategy: str = "margin"
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    retrain_every: int = Field(default=50, ge=1)


class ProjectPatch(BaseModel):
    description: str | None = None
    strategy: str | None = None
    strategy_params: dict[str, Any] | None = None
    retrain_every: int | None = Field(default=None, ge=1)


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    description: str
    kind: str
    multi_label: bool
    strategy: str
    strategy_params: dict[str, Any]
    encoder: str
    head: str
    retrain_every: int
    created_at: datetime
    classes: list[ClassOut]


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    project_id: int | None
    kind: str
    status: str
    params: dict[str, Any]
    progress_done: int
    progress_total: int
    message: str
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ModelVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    version: int
    head: str
    encoder: str
    n_labels: int
    metrics: dict[str, Any]
    created_at: datetime


class EncodingStatus(BaseModel):
    embedded: int
    total: int
    fraction: float


class ProjectStatusOut(BaseModel):
    project: ProjectOut
    counts: dict[str, int]
    total_items: int
    encoding: EncodingStatus
    model: ModelVersionOut | None
    active_jobs: list[JobOut]


# -- labeling loop (next batch, labels, history, auto-label) ---------------------------------------
class ClassRefOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str


class ClassProbabilityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    class_id: int
    name: str
    probability: float


class PredictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    classes: list[ClassRefOut] = Field(description="The predicted classes")
    probabilities: list[ClassProbabilityOut]
    confidence: float
    model_version: int


class QueueItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    item_id: int
    text: str | None
    external_id: str | None
    media_uri: str | None
    meta: dict[str, Any] | None
    priority: float | None = Field(description="Higher is served first; null when not ranked")
    reason: str = Field(description="Why this item is served now, e.g. 'margin 0.03'")
    prediction: PredictionOut | None
    lease_until: datetime


class NextBatchOut(BaseModel):
    project_id: int
    annotator: str
    lease_seconds: int
    items: list[QueueItemOut]


_REQUEST_ID = (
    "A key the client makes once per answer (e.g. a UUID); sending the same answer again with it "
    "returns the label already made instead of recording a second one"
)


class LabelIn(BaseModel):
    classes: list[int | str] = Field(
        description="Class ids (numbers) or names (strings); exactly one for a single-label project"
    )
    annotator: str = Field(default="anonymous", min_length=1, max_length=200)
    request_id: str | None = Field(
        default=None, min_length=1, max_length=64, description=_REQUEST_ID
    )


class SkipIn(BaseModel):
    annotator: str = Field(default="anonymous", min_length=1, max_length=200)
    request_id: str | None = Field(
        default=None, min_length=1, max_length=64, description=_REQUEST_ID
    )


class LabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    item_id: int
    source: str
    skipped: bool
    annotator: str | None
    classes: list[ClassRefOut]
    confidence: float | None
    model_version: int | None
    is_current: bool
    created_at: datetime
    superseded_at: datetime | None


class LabelResultOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    label: LabelOut
    item_status: str
    training_job_id: int | None = Field(description="The training this label scheduled, if any")


class ItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    project_id: int
    text: str | None
    external_id: str | None
    media_uri: str | None
    meta: dict[str, Any] | None
    status: str
    priority: float | None
    priority_reason: str | None
    embedded: bool
    leased_by: str | None
    lease_until: datetime | None
    created_at: datetime


class ItemHistoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    item: ItemOut
    current_label: LabelOut | None
    labels: list[LabelOut] = Field(description="Every label the item had, newest first")
    prediction: PredictionOut | None


class AutolabelIn(BaseModel):
    threshold: float | None = Field(
        default=None, gt=0, le=1, description="Minimum predicted probability"
    )
    target_precision: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Instead of a threshold: the precision wanted (e.g. 0.98); the threshold is "
        "chosen on probabilities calibrated on the random evaluation sample",
    )

    @model_validator(mode="after")
    def _one_of(self) -> AutolabelIn:
        if (self.threshold is None) == (self.target_precision is None):
            raise ValueError("give exactly one of threshold or target_precision")
        return self


class AutolabelPreviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    threshold: float
    count: int
    by_class: dict[str, int]
    model_version: int


class AutolabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    threshold: float
    labeled: int
    model_version: int


# -- import and export ----------------------------------------------------------------------------
class DuplicateExampleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    line: int = Field(description="Line of the file where the skipped row starts")
    text: str = Field(description="The row's text (shortened)")
    duplicate_of: str = Field(description="'file' (an earlier row) or 'project' (an existing item)")
    first_line: int | None = Field(default=None, description="The earlier row, for 'file'")
    item_id: int | None = Field(default=None, description="The existing item, for 'project'")


class ImportReportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    import_id: int
    project_id: int
    filename: str
    format: str
    rows: int = Field(description="Data rows read from the file")
    items_created: int
    labels_created: int = Field(description="Labels imported as human labels")
    duplicates: int = Field(description="Rows skipped because their text was already there")
    duplicate_examples: list[DuplicateExampleOut] = Field(description="The first 20 duplicates")
    empty_rows: int = Field(description="Rows skipped because their text was empty")
    empty_row_lines: list[int] = Field(description="Lines of the first 20 empty rows")
    text_field: str | None
    label_field: str | None
    id_field: str | None
    bytes_read: int
    seconds: float
    encode_job_id: int | None = Field(description="The job that embeds the new items")


class ImportRecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    project_id: int
    filename: str
    format: str
    rows: int
    items_created: int
    labels_created: int
    duplicates: int
    report: dict[str, Any]
    created_at: datetime


# -- data browser: the items table and the queue preview ------------------------------------------
class ItemRowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    external_id: str | None
    text: str | None = Field(description="The text, cut to 300 characters in the table")
    text_truncated: bool
    status: str
    classes: list[ClassRefOut] = Field(description="Classes of the current label")
    source: str | None = Field(description="human or model: who gave the current label")
    annotator: str | None
    labeled_at: datetime | None
    label_confidence: float | None = Field(description="An auto label's confidence")
    label_model_version: int | None = Field(description="The model version of an auto label")
    confidence: float | None = Field(
        description="The newest prediction's confidence (what the confidence filters test)"
    )
    predicted: list[ClassRefOut] = Field(description="Classes of the newest prediction")
    model_version: int | None = Field(description="Model version of the newest prediction")


class ItemPageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    items: list[ItemRowOut]
    next_after_id: int | None = Field(description="after_id of the next page; null on the last")
    total: int
    total_exact: bool = Field(description="false: at least `total` items match (count capped)")
    limit: int


class QueuePreviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    item_id: int
    text: str | None
    text_truncated: bool
    priority: float | None = Field(description="The strategy's score; higher is served first")
    reason: str
    predicted: list[ClassRefOut]
    confidence: float | None
    model_version: int | None
    leased_by: str | None = Field(description="Whose screen the item is on now, if anyone's")
    lease_until: datetime | None


class ReviewFlagOut(BaseModel):
    """A human label the model confidently disagrees with (label QA), and how it was resolved."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    item_id: int
    text: str | None
    external_id: str | None
    media_uri: str | None
    label_id: int
    label_classes: list[ClassRefOut] = Field(description="The flagged label's classes")
    annotator: str | None
    suggested_class: ClassRefOut | None = Field(description="The class the model believes")
    score: float = Field(description="Suspicion: 1 - p(given label), out of fold; higher first")
    model_version_id: int | None
    status: str = Field(description="open, kept or changed")
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution_label_id: int | None = Field(description="The reviewer's new label (changed)")


class ReviewQueueOut(BaseModel):
    project_id: int
    flags: list[ReviewFlagOut]


class ReviewIn(BaseModel):
    action: str = Field(description="'keep' the flagged label or 'change' it")
    classes: list[int | str] | None = Field(
        default=None, description="The new label's class ids or names (action 'change' only)"
    )
    reviewer: str = Field(default="anonymous", min_length=1, max_length=200)


# -- honest evaluation, calibrated auto-label, stopping -------------------------------------------
class PrecisionPreviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    target_precision: float
    count: int = Field(description="Unlabeled items that would be auto-labeled")
    threshold: float | None = Field(description="Lowest calibrated confidence labeled")
    estimated_precision: float | None = Field(description="Mean calibrated confidence of those")
    ci_low: float = Field(description="Wilson 95% interval, from the evaluation items above it")
    ci_high: float
    eval_n: int = Field(description="Labeled evaluation items at or above the threshold")
    calibrated: bool
    temperature: float
    model_version: int


class EvalSampleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    project_id: int
    size: int
    labeled: int
    unlabeled: int
    drawn: int = 0


class StoppingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    stop: bool
    reason: str
    gain_per_100_labels: float | None = Field(description="Accuracy points per 100 labels")
    agreement_with_previous: float | None
    labels: int
    estimated_labels_saved: int
    metric: str = Field(description="Which accuracy the trend uses")
