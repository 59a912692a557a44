"""business hours and the away reply

Revision ID: n26hours0001
Revises: f7a8b9c0d1e2
Create Date: 2026-12-14 09:00:00

A new table for the hours; a conversation remembers when the away reply last went to it; a
message says which automatic reply it is (`via`).
"""

import sqlalchemy as sa
from alembic import op

revision = "n26hours0001"
down_revision = "n26newmsg001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "business_hours",
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("weekly", sa.JSON(), nullable=False),
        sa.Column("closed", sa.JSON(), nullable=False),
        sa.Column("away_text", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("recipient", name=op.f("pk_business_hours")),
    )
    op.add_column("conversation", sa.Column("away_sent_at", sa.DateTime(), nullable=True))
    op.add_column("message", sa.Column("via", sa.String(length=16), nullable=True))


def downgrade():
    op.drop_column("message", "via")  # ALTER TABLE ... DROP COLUMN, on SQLite too (3.35+)
    op.drop_column("conversation", "away_sent_at")
    op.drop_table("business_hours")
