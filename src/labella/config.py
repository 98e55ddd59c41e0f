"""Settings, read from the environment (``LABELLA_*``) and an optional ``.env`` file.

By default everything lives in one local data directory: a SQLite database file, the embedding
cache and model artifacts. ``LABELLA_DATABASE_URL`` points the server at PostgreSQL instead.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABELLA_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path("labella-data"), description="Where the database, caches and models live"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; SQLite under data_dir when unset"
    )
    host: str = "127.0.0.1"
    port: int = 8000

    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024, description="Largest import file accepted"
    )
    import_chunk_rows: int = Field(default=5000, description="Rows written per database round trip")
    sqlite_busy_seconds: float = Field(
        default=30.0,
        gt=0,
        description="SQLite: how long a write waits for the single write lock (held by another "
        "writer, e.g. a large import) before it gives up and the request is answered 503",
    )
    max_request_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest request body other than a multipart upload (JSON, forms); larger "
        "ones are refused with 413 before they are parsed",
    )

    text_encoder: str = "all-MiniLM-L6-v2"
    image_encoder: str = Field(
        default="efficientnet-lite0", description="Encoder of new image projects"
    )
    encode_batch_size: int = 64
    encode_chunk: int = 512
    detector: str = Field(
        default="centernet-efficientnet-lite0",
        description="Registered detector that object-detection projects train (issue 8)",
    )
    detector_params: dict[str, Any] = Field(
        default_factory=dict,
        description='Detector hyperparameters as JSON, e.g. {"input_size": 320, "epochs": 20}',
    )
    detector_versions_kept: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Detector weights kept per object-detection project: the newest this many "
        "versions' (tens of MB each; a project retrains every few dozen labels). Older versions "
        "keep their metrics, not their weights",
    )

    import_roots: list[Path] = Field(
        default_factory=list,
        description="Folders whose images an HTTP client may import by path (referenced in "
        "place); the data dir is always allowed. The CLI also allows its working directory "
        "and the folder or file it is given.",
    )
    max_image_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="Largest single image file accepted"
    )
    max_image_pixels: int = Field(
        default=64_000_000,
        ge=1,
        description="Largest image (width × height) decoded; larger ones are refused as "
        "decompression bombs",
    )

    run_worker: bool = Field(
        default=True, description="Run the job worker inside the server process"
    )
    worker_poll_seconds: float = 0.5
    job_heartbeat_seconds: float = 5.0
    job_stale_seconds: float = Field(
        default=60.0, description="A running job silent this long is orphaned"
    )
    job_max_attempts: int = 3

    queue_size: int = Field(
        default=2000, description="How many items each ranking orders explicitly"
    )
    rank_batch: int = Field(
        default=20,
        ge=1,
        description="Batch size a batch strategy (cluster-margin) builds the queue in",
    )
    lease_seconds: int = Field(default=600, description="How long a served item stays reserved")
    random_seed: int = 0

    eval_sample_size: int = Field(
        default=100,
        ge=0,
        description="Items drawn uniformly at random per project for unbiased evaluation",
    )
    eval_every: int = Field(
        default=5, ge=0, description="Serve one evaluation-sample item every this many; 0: never"
    )
    auto_finetune_at: int = Field(
        default=250,
        ge=0,
        le=1_000_000,
        description="Human labels at which a new text-classification project fine-tunes its "
        "encoder by itself (again each time the labels double); 0: never",
    )

    cookie_secure: bool | None = Field(
        default=None,
        description="Mark the session cookie Secure; unset: secure unless the request is plain "
        "http to localhost",
    )
    session_days: float = Field(default=14, gt=0, description="How long a browser sign-in lasts")
    login_failures_per_user: int = Field(
        default=5, ge=1, description="Failed sign-ins for one username within the window"
    )
    login_failures_per_client: int = Field(
        default=20, ge=1, description="Failed sign-ins from one address within the window"
    )
    login_window_seconds: int = Field(default=900, ge=1)
    owner_username: str | None = Field(
        default=None, description="The site owner `labella serve` creates on first start"
    )
    owner_password: str | None = Field(
        default=None, description="Their password (else prompted, or generated and printed once)"
    )

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'labella.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    embedding_cache_dir: Path | None = Field(
        default=None, description="Shared embedding cache; data_dir/cache/embeddings when unset"
    )

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def embeddings_dir(self) -> Path:
        return self.embedding_cache_dir or self.cache_dir / "embeddings"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def media_dir(self) -> Path:
        """Uploaded images, content-addressed (images imported by path stay where they are)."""
        return self.data_dir / "media"

    @property
    def thumbnails_dir(self) -> Path:
        return self.data_dir / "thumbnails"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.cache_dir, self.embeddings_dir, self.models_dir):
            path.mkdir(parents=True, exist_ok=True)
