"""self-training on the unlabeled pool: project.self_training (issue 3)

Whether a project's training also learns from the model's confident predictions on the unlabeled
items (learners.self_training). New single-label classification projects get it on; existing
projects keep training as they did, with it off.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN, not batch mode: on SQLite batch mode rebuilds the table, and
    # dropping the old project table deletes every item and label through ON DELETE CASCADE
    op.add_column(
        "project",
        sa.Column("self_training", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN (3.35+) rather than batch mode's table rebuild
        op.execute("ALTER TABLE project DROP COLUMN self_training")
        return
    op.drop_column("project", "self_training")
