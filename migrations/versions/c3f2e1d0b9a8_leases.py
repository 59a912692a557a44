"""leases

Revision ID: c3f2e1d0b9a8
Revises: b2e1f0a9c8d7
Create Date: 2026-12-06 03:00:00

A `lease` table: named leases shared by every process (app/jobs/leases.py), first for "one running
export per person at a time".
"""

import sqlalchemy as sa
from alembic import op

revision = "c3f2e1d0b9a8"
down_revision = "b2e1f0a9c8d7"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "lease",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_lease")),
    )


def downgrade():
    op.drop_table("lease")
