"""automatic encoder fine-tuning: project.auto_finetune_at (issue 3)

Human labels at which the project's first automatic fine-tuning is queued (then again each time
the labels double); 0 turns it off, and existing projects keep it off.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN, not batch mode: on SQLite batch mode rebuilds the table, and
    # dropping the old project table deletes every item and label through ON DELETE CASCADE
    op.add_column(
        "project",
        sa.Column("auto_finetune_at", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN (3.35+) rather than batch mode's table rebuild
        op.execute("ALTER TABLE project DROP COLUMN auto_finetune_at")
        return
    op.drop_column("project", "auto_finetune_at")
