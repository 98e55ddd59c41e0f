"""online learning and auto-label audit: project.cost_per_label, project.online_update_every,
item.audit_sample

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cost_per_label", sa.Float(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("online_update_every", sa.Integer(), nullable=False, server_default="1")
        )
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("audit_sample", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.drop_column("audit_sample")
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.drop_column("online_update_every")
        batch_op.drop_column("cost_per_label")
