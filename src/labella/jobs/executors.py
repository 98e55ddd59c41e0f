"""Registers the executor of every job kind. Importing this module is what makes a worker able to
run jobs; each executor opens its own units of work and reports progress."""

from __future__ import annotations

# Each module registers its kinds with @executor when imported.
from labella.services import (  # noqa: F401  (each module registers its job kinds)
    detection_training,  # "train_detector"
    encoding,  # "encode"
    finetuning,  # "finetune_encoder"
    online,  # "online_update"
    ranking,  # "rank"
    training,  # "train"
)
