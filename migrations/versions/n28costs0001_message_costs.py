"""message costs: a reply's price and parts from its delivery reports, each leg's latest report,
and the rest of a report kept until its reply is known

Revision ID: n28costs0001
Revises: n28tally0001
Create Date: 2026-12-06 13:00:00

Plain ADD COLUMNs (no table rebuilt: on SQLite that would drop message's text search triggers)
and a partial index over the priced replies (a thread's total cost).
"""

import sqlalchemy as sa
from alembic import op

revision = "n28costs0001"
down_revision = "n28tally0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("message", sa.Column("price", sa.Numeric(precision=14, scale=6), nullable=True))
    op.add_column("message", sa.Column("parts", sa.Integer(), nullable=True))
    op.add_column("message", sa.Column("price_legs", sa.JSON(none_as_null=True), nullable=True))
    op.create_index(
        "ix_message_priced",
        "message",
        ["conversation_id", "price"],
        sqlite_where=sa.text("price IS NOT NULL"),
        postgresql_where=sa.text("price IS NOT NULL"),
    )
    op.add_column("unmatched_delivery_report", sa.Column("channel", sa.String(length=32), nullable=True))
    op.add_column("unmatched_delivery_report", sa.Column("sender", sa.String(length=64), nullable=True))
    op.add_column("unmatched_delivery_report", sa.Column("reported_at", sa.DateTime(), nullable=True))
    op.add_column("unmatched_delivery_report", sa.Column("price", sa.Numeric(precision=14, scale=6), nullable=True))
    op.add_column("unmatched_delivery_report", sa.Column("parts", sa.Integer(), nullable=True))


def downgrade():
    for column in ("parts", "price", "reported_at", "sender", "channel"):
        op.drop_column("unmatched_delivery_report", column)
    op.drop_index("ix_message_priced", table_name="message")
    for column in ("price_legs", "parts", "price"):
        op.drop_column("message", column)
