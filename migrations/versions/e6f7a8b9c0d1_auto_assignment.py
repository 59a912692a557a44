"""auto-assignment: whose turn it is

Revision ID: e6f7a8b9c0d1
Revises: d5e6f7a8b9c0
Create Date: 2026-12-14 09:00:00

The change number of the last conversation auto-assignment gave each person: among people with
equally few open conversations, the one given one longest ago goes first. Its settings are rows
of `setting`, which need no migration.
"""

import sqlalchemy as sa
from alembic import op

revision = "e6f7a8b9c0d1"
down_revision = "d5e6f7a8b9c0"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("user", sa.Column("auto_assigned_seq", sa.BigInteger(), nullable=True))


def downgrade():
    op.drop_column("user", "auto_assigned_seq")
