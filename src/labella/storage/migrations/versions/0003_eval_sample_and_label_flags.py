"""item.eval_sample (unbiased evaluation sample) and label_flag (label QA review queue)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("eval_sample", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "label_flag",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("suggested_class_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolution_label_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"], ["item.id"], name=op.f("fk_label_flag_item_id_item"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["label_id"],
            ["label.id"],
            name=op.f("fk_label_flag_label_id_label"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
            name=op.f("fk_label_flag_model_version_id_model_version"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_label_flag_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resolution_label_id"],
            ["label.id"],
            name=op.f("fk_label_flag_resolution_label_id_label"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["suggested_class_id"],
            ["label_class.id"],
            name=op.f("fk_label_flag_suggested_class_id_label_class"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_flag")),
    )
    with op.batch_alter_table("label_flag", schema=None) as batch_op:
        batch_op.create_index(
            "ix_label_flag_queue", ["project_id", "status", "score"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("label_flag", schema=None) as batch_op:
        batch_op.drop_index("ix_label_flag_queue")
    op.drop_table("label_flag")
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.drop_column("eval_sample")
