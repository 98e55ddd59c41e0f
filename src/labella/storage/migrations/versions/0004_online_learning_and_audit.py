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
    # plain ALTER TABLE ADD COLUMN, not batch mode: on SQLite batch mode rebuilds the table, and
    # dropping the old item table deletes every label through ON DELETE CASCADE
    op.add_column(
        "project", sa.Column("cost_per_label", sa.Float(), nullable=False, server_default="0")
    )
    op.add_column(
        "project",
        sa.Column("online_update_every", sa.Integer(), nullable=False, server_default="1"),
    )
    op.add_column(
        "item", sa.Column("audit_sample", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_index("ix_item_audit", "item", ["project_id", "audit_sample", "status"])


def downgrade() -> None:
    op.drop_index("ix_item_audit", table_name="item")
    _drop_columns("item", "audit_sample")
    _drop_columns("project", "online_update_every", "cost_per_label")


def _drop_columns(table: str, *columns: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN (3.35+): batch mode would rebuild the table, and dropping the
        # old one deletes, through ON DELETE CASCADE, every row that refers to it
        for column in columns:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        return
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in columns:
            batch_op.drop_column(column)
