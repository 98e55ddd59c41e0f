"""detection boxes: label_box holds the bounding boxes of an object-detection label (issue 8)

A detection label is a ``label`` row (human or model) with any number of boxes; zero boxes is a
valid answer ("nothing here"). Coordinates are floats in image pixels; ``score`` is set for a
model's boxes only.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "label_box",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("x_min", sa.Float(), nullable=False),
        sa.Column("y_min", sa.Float(), nullable=False),
        sa.Column("x_max", sa.Float(), nullable=False),
        sa.Column("y_max", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["class_id"],
            ["label_class.id"],
            name=op.f("fk_label_box_class_id_label_class"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["label_id"],
            ["label.id"],
            name=op.f("fk_label_box_label_id_label"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_box")),
    )
    with op.batch_alter_table("label_box", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_label_box_label_id"), ["label_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_label_box_class_id"), ["class_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("label_box", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_label_box_class_id"))
        batch_op.drop_index(batch_op.f("ix_label_box_label_id"))
    op.drop_table("label_box")
