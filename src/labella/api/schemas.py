"""HTTP request and response bodies. The domain never imports these; routes convert."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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
    strategy: str | None = Field(
        default=None, description="Query strategy; default cluster_margin (ml_margin multi-label)"
    )
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    retrain_every: int = Field(default=50, ge=1)
    online_update_every: int = Field(default=1, ge=0, le=10_000)
    cost_per_label: float = Field(default=0.0, ge=0)
    overlap: int = Field(default=1, ge=1, le=20, description="Annotators per overlapped item")
    overlap_share: float = Field(default=1.0, ge=0, le=1, description="Share of items overlapped")
    review_sample_share: float = Field(
        default=0.0, ge=0, le=1, description="Share of each annotator's labels sent to review"
    )
    encoder: str | None = Field(
        default=None,
        max_length=100,
        description="A registered encoder for the kind (plug-ins included); default "
        "all-MiniLM-L6-v2 for texts, efficientnet-lite0 for images",
    )
    auto_finetune_at: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Human labels at which the encoder fine-tunes itself (again each time they "
        "double); 0: never. Default LABELLA_AUTO_FINETUNE_AT (250) for single-label text "
        "projects, 0 otherwise",
    )
    self_training: bool | None = Field(
        default=None,
        description="Training also learns from the model's confident predictions on the "
        "unlabeled items (seconds to a minute more per training). Default: on for single-label "
        "text projects, off for image projects; not available for multi-label or "
        "object-detection projects",
    )


class ProjectPatch(BaseModel):
    description: str | None = None
    strategy: str | None = None
    strategy_params: dict[str, Any] | None = None
    retrain_every: int | None = Field(default=None, ge=1)
    online_update_every: int | None = Field(default=None, ge=0, le=10_000)
    cost_per_label: float | None = Field(default=None, ge=0)
    overlap: int | None = Field(
        default=None, ge=1, le=20, description="Annotators per overlapped item; 1: no overlap"
    )
    overlap_share: float | None = Field(
        default=None, ge=0, le=1, description="Share of the items that overlap"
    )
    review_sample_share: float | None = Field(
        default=None, ge=0, le=1, description="Share of each annotator's labels sent to review"
    )
    encoder: str | None = Field(
        default=None,
        description="Switch to another encoder of the project's modality, e.g. back to the base "
        "encoder after a fine-tuning; items are re-encoded (cached vectors are reused) and a "
        "training on the new vectors is queued",
    )
    auto_finetune_at: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Human labels at which the encoder fine-tunes itself (again each time they "
        "double); 0: never. Not for object-detection or multi-label projects",
    )
    self_training: bool | None = Field(
        default=None,
        description="Training also learns from the model's confident predictions on the "
        "unlabeled items; true only for single-label classification projects",
    )


class FinetuneRequest(BaseModel):
    """Optional settings of an encoder fine-tuning (services.finetuning, which checks them per
    kind of project); CPU time grows with labels x epochs (text, classifier), pairs x epochs (text,
    SetFit), labels x epochs x image_size squared (images)."""

    method: Literal["classifier", "setfit"] | None = Field(
        default=None,
        description="Text: 'classifier' (end to end with cross-entropy; the default) or 'setfit' "
        "(contrastive sentence pairs; the default when n_iterations or max_pairs is given)",
    )
    n_iterations: int | None = Field(
        default=None, ge=1, le=100, description="Text, SetFit: pair rounds (R); default 20"
    )
    epochs: int | None = Field(
        default=None,
        ge=1,
        le=50,
        description="Passes over the labels (text, classifier: 1-30, default 8), the pairs "
        "(SetFit: 1-10, default 1) or the images (1-50, default 15)",
    )
    max_pairs: int | None = Field(
        default=None,
        ge=2,
        le=100_000,
        description="Text, SetFit: cap on the training pairs; default 8000",
    )
    members: int | None = Field(
        default=None,
        ge=1,
        le=5,
        description="Text: copies of the encoder fine-tuned side by side, each with its own "
        "seed (a deep ensemble: steadier accuracy for that many times the time); default 2 "
        "(classifier) or 1 (SetFit)",
    )
    image_size: int | None = Field(
        default=None, ge=32, le=512, description="Images: side in pixels; default 224"
    )


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
    online_update_every: int
    cost_per_label: float
    overlap: int
    overlap_share: float
    review_sample_share: float
    auto_finetune_at: int
    self_training: bool
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


class BoxOut(BaseModel):
    """A bounding box in image pixels (object detection); ``score`` is the detector's, null for
    a human's box."""

    model_config = ConfigDict(from_attributes=True)
    class_id: int
    name: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    score: float | None = None


class PredictionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    classes: list[ClassRefOut] = Field(description="The predicted classes")
    probabilities: list[ClassProbabilityOut]
    confidence: float
    model_version: int
    boxes: list[BoxOut] | None = Field(
        default=None,
        description="Object detection: the detector's boxes scoring at least 0.3, best first "
        "(the box editor's prelabels); null for classification",
    )


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
    annotator: str = Field(
        default="anonymous",
        min_length=1,
        max_length=200,
        deprecated=True,
        description="Ignored: the signed-in user is the annotator",
    )
    request_id: str | None = Field(
        default=None, min_length=1, max_length=64, description=_REQUEST_ID
    )


class SkipIn(BaseModel):
    annotator: str = Field(
        default="anonymous",
        min_length=1,
        max_length=200,
        deprecated=True,
        description="Ignored: the signed-in user is the annotator",
    )
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
    kind: str = Field(
        default="label",
        description="'label' (the item's label) or 'answer' (one annotator's answer to an "
        "overlapped item; the label is decided from the answers)",
    )
    decided_by: str | None = Field(
        default=None,
        description="How a label made from several answers was decided: consensus, majority "
        "or reviewer; null for one source's own label",
    )


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


class AnswerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    annotator: str
    classes: list[ClassRefOut]
    skipped: bool
    created_at: datetime


class ReviewFlagOut(BaseModel):
    """An entry of the review queue, and how it was resolved."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str = Field(description="suspect_label, disagreement or work_sample")
    item_id: int
    text: str | None
    external_id: str | None
    media_uri: str | None
    item_status: str
    label_id: int | None = Field(
        description="The label in question; null for a disagreement without a majority"
    )
    label_classes: list[ClassRefOut] = Field(description="The flagged label's classes")
    label_skipped: bool
    annotator: str | None = Field(description="Who gave the label in question (null: decided)")
    decided_by: str | None = Field(description="How the label in question was decided")
    suggested_class: ClassRefOut | None = Field(description="The class the model believes")
    score: float = Field(
        description="Higher first: suspicion 1 - p(given label) for suspect labels, "
        "1 - share of the most common answer for disagreements, 0 for work samples"
    )
    model_version_id: int | None
    answers: list[AnswerOut] = Field(description="The annotators' answers (disagreements)")
    status: str = Field(description="open, kept (approved) or changed")
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution_label_id: int | None = Field(description="The reviewer's new label (changed)")


class ReviewQueueOut(BaseModel):
    project_id: int
    counts: dict[str, int] = Field(description="Open entries per kind")
    flags: list[ReviewFlagOut]


class ReviewIn(BaseModel):
    action: str = Field(
        description="'approve' (or 'keep') the label in question, or 'change' it to `classes`"
    )
    classes: list[int | str] | None = Field(
        default=None, description="The new label's class ids or names (action 'change' only)"
    )
    reviewer: str = Field(
        default="anonymous",
        min_length=1,
        max_length=200,
        deprecated=True,
        description="Ignored: the signed-in user is the reviewer",
    )


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
    warnings: list[str] = Field(
        default_factory=list,
        description="Why the evaluation sample cannot confirm the target (empty when it can)",
    )


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
    cost_per_label: float = Field(description="The project's cost of one human label (0: unset)")
    estimated_cost_saved: float | None = Field(
        description="estimated_labels_saved x cost_per_label; None when no cost is set"
    )
    metric: str = Field(description="Which accuracy the trend uses")


class AutolabelAuditIn(BaseModel):
    size: int = Field(ge=1, le=10_000, description="Auto-labeled items the audit should hold")


class AutolabelAuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    project_id: int
    auto_labeled: int = Field(description="Items whose current label is the model's")
    queued: int = Field(description="Audit items waiting for a human")
    checked: int = Field(description="Audit items a human has labeled")
    agreed: int = Field(description="Of those, the human gave the model's classes")
    precision: float | None = Field(description="Measured precision of the auto-labels")
    ci_low: float
    ci_high: float
    drawn: int = 0


# -- accounts, members and the audit log ----------------------------------------------------------
class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    is_admin: bool
    is_active: bool
    created_at: datetime


class MeOut(BaseModel):
    user: UserOut
    via: str = Field(description="How this request signed in: session or token")
    csrf_token: str | None = Field(
        description="Send as X-CSRF-Token with every POST/PUT/PATCH/DELETE signed in by the "
        "session cookie (null for API tokens, which need none)"
    )
    roles: dict[int, str] = Field(description="project id -> your role there")
    permissions: dict[str, list[str]] = Field(description="role -> the permissions it grants")


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)
    is_admin: bool = False


class UserPatch(BaseModel):
    is_active: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1000)


class PasswordChangeIn(BaseModel):
    current_password: str = Field(min_length=1, max_length=1000)
    new_password: str = Field(min_length=1, max_length=1000)


class TokenCreate(BaseModel):
    name: str = Field(
        min_length=1, max_length=200, description="What uses it, e.g. 'nightly export'"
    )


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    name: str
    prefix: str = Field(description="The secret's first characters, to recognise it")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreatedOut(TokenOut):
    secret: str = Field(description="Shown this once; send as 'Authorization: Bearer <secret>'")


class MemberIn(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    role: str = Field(description="owner, manager, reviewer or annotator")


class MemberPatch(BaseModel):
    role: str = Field(description="owner, manager, reviewer or annotator")


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    project_id: int
    user_id: int
    username: str
    role: str
    created_at: datetime


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    at: datetime
    actor: str
    action: str
    project_id: int | None
    item_id: int | None
    detail: dict[str, Any]
    event_id: int | None = Field(default=None, description="The audit event's id (paging)")
    label_id: int | None = Field(default=None, description="For label entries: the label's id")


class AuditPageOut(BaseModel):
    events: list[AuditEventOut]
    next_before_id: int | None = Field(description="Give as before_id for the next (older) page")


# -- images (import report, folder import) ---------------------------------------------------------
class SkippedImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str = Field(description="The file as the source names it (relative path, zip member)")
    reason: str


class ImageDuplicateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    duplicate_of: str = Field(description="'file': earlier in this import; 'project': already in")
    first_name: str | None
    item_id: int | None
    other_label: bool = Field(
        default=False, description="Came with another class than the copy kept (single-label)"
    )


class ImageImportReportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    import_id: int
    project_id: int
    source: str
    format: str = Field(description="folder, zip, csv, tsv, jsonl or upload")
    images_found: int
    items_created: int
    labels_created: int = Field(description="Labels imported as human labels")
    duplicates: int = Field(description="Images skipped because the same bytes are already there")
    duplicate_examples: list[ImageDuplicateOut]
    labels_merged: int = Field(
        default=0,
        description="Multi-label: copies of one image under several classes, merged into one item",
    )
    skipped: int = Field(description="Bad images skipped (corrupt, unsupported, unsafe path, ...)")
    skipped_examples: list[SkippedImageOut] = Field(description="The first 100, with the reason")
    other_files: int = Field(description="Files that are not images, ignored")
    stored: int = Field(description="Images copied into the media store (uploads, zip members)")
    referenced: int = Field(description="Images referenced in place on the server's disk")
    thumbnails_made: int
    labels_from: str | None
    bytes_read: int
    seconds: float
    encode_job_id: int | None = Field(description="The job that embeds the new items")


class FolderImportIn(BaseModel):
    path: str = Field(
        min_length=1,
        description="A folder on the server, inside LABELLA_IMPORT_ROOTS or the data dir",
    )
    labels_from_folders: bool = Field(
        default=True, description="Top-level subfolders name the class of the images in them"
    )


# -- agreement and the annotator dashboard --------------------------------------------------------
class PairAgreementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    annotator_a: str
    annotator_b: str
    items: int = Field(description="Items both answered (skips left out)")
    percent_agreement: float | None
    cohen_kappa: float | None = Field(description="Null when undefined (one class only)")


class ProjectAgreementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    project_id: int
    multi_label: bool = Field(
        description="Kappa and alpha are then per-class means; percent agreement compares the "
        "whole class sets"
    )
    items: int = Field(description="Items with at least two answers (skips left out)")
    annotators: int
    answers: int
    percent_agreement: float | None
    fleiss_kappa: float | None
    krippendorff_alpha: float | None = Field(description="Nominal, missing answers allowed")
    pairs: list[PairAgreementOut]
    decided_by: dict[str, int] = Field(
        description="Current labels made from answers, by how they were decided"
    )
    in_review: int = Field(description="Items waiting for a reviewer (no majority)")


class AnnotatorStatsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    annotator: str
    labels: int = Field(description="Labels and overlap answers given (skips not counted)")
    skips: int
    recent_labels: int = Field(description="Labels in the window")
    active_hours: float = Field(description="Labeling time in the window, long pauses left out")
    labels_per_hour: float | None = Field(description="Pace while labeling, over the window")
    last_active: datetime | None
    shared_items: int = Field(description="Overlapped items they and someone else answered")
    agreement_with_others: float | None
    kappa_with_others: float | None
    reviewed: int = Field(description="Review decisions about their labels or answers")
    agreement_with_review: float | None = Field(
        description="Share of those decisions that sided with them"
    )


class AnnotatorDashboardOut(BaseModel):
    project_id: int
    window_hours: float
    annotators: list[AnnotatorStatsOut]
