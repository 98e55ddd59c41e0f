"""detector predictions: prediction.boxes holds a detector's boxes with their scores (issue 8)

A list of ``{"class_id", "x_min", "y_min", "x_max", "y_max", "score"}`` in original-image pixels
(the convention of ``label_box``); NULL for classification predictions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN, not batch mode: on SQLite batch mode rebuilds the table
    op.add_column("prediction", sa.Column("boxes", sa.JSON(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN (3.35+) rather than batch mode's table rebuild
        op.execute("ALTER TABLE prediction DROP COLUMN boxes")
        return
    op.drop_column("prediction", "boxes")
