"""tally: running totals for reports, per quarter hour

Revision ID: n28tally0001
Revises: n27hooks0001
Create Date: 2026-12-06 12:30:00

One new table; nothing existing changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "n28tally0001"
down_revision = "n27hooks0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "tally",
        sa.Column("bucket", sa.DateTime(), nullable=False),
        sa.Column("metric", sa.String(length=24), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("our_number", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("value", sa.Numeric(precision=20, scale=6), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "metric", "channel", "our_number", "user_id", name=op.f("pk_tally")),
    )


def downgrade():
    op.drop_table("tally")
