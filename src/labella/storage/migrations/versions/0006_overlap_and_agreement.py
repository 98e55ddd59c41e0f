"""overlap and agreement: per-annotator answers and how labels were decided (issue 7)

project.overlap / overlap_share / review_sample_share; label.kind ("label" or "answer") and
label.decided_by; label_flag.label_id nullable (a disagreement without a majority has no label
yet); item_assignment (per-annotator leases and answers of overlapped items).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("project", schema=None) as batch_op:
        batch_op.add_column(sa.Column("overlap", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(
            sa.Column("overlap_share", sa.Float(), nullable=False, server_default="1")
        )
        batch_op.add_column(
            sa.Column("review_sample_share", sa.Float(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("label", schema=None) as batch_op:
        # every label stored so far is an item's label, none an overlap answer
        batch_op.add_column(
            sa.Column("kind", sa.String(length=10), nullable=False, server_default="label")
        )
        batch_op.add_column(sa.Column("decided_by", sa.String(length=20), nullable=True))
        batch_op.create_index(
            "ix_label_annotator", ["project_id", "annotator", "created_at"], unique=False
        )
    with op.batch_alter_table("label_flag", schema=None) as batch_op:
        batch_op.alter_column("label_id", existing_type=sa.Integer(), nullable=True)
    op.create_table(
        "item_assignment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("annotator", sa.String(length=200), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["item.id"],
            name=op.f("fk_item_assignment_item_id_item"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_item_assignment_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_assignment")),
        sa.UniqueConstraint("item_id", "annotator", name=op.f("uq_item_assignment_item_id")),
    )
    with op.batch_alter_table("item_assignment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_item_assignment_project_id"), ["project_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("item_assignment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_assignment_project_id"))
    op.drop_table("item_assignment")
    # flags without a label (undecided disagreements) cannot survive the NOT NULL column
    op.execute("DELETE FROM label_flag WHERE label_id IS NULL")
    with op.batch_alter_table("label_flag", schema=None) as batch_op:
        batch_op.alter_column("label_id", existing_type=sa.Integer(), nullable=False)
    # overlap answers have no place in the older schema: only item labels stay
    op.execute("DELETE FROM label WHERE kind = 'answer'")
    op.execute("UPDATE item SET status = 'unlabeled' WHERE status = 'in_review'")
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.drop_index("ix_label_annotator")
    _drop_columns("label", "decided_by", "kind")
    _drop_columns("project", "review_sample_share", "overlap_share", "overlap")


def _drop_columns(table: str, *columns: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's own DROP COLUMN (3.35+): batch mode would rebuild the table, and dropping the
        # old one deletes, through ON DELETE CASCADE, every row that refers to it (all items and
        # labels of every project)
        for column in columns:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        return
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in columns:
            batch_op.drop_column(column)
