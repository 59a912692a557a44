"""servers: where each running server listens

Revision ID: d4c3b2a1f0e9
Revises: a1d0e2f3c4b5
Create Date: 2026-12-06 03:00:00

One row per running server process (its host, pid, the address it listens on, PUBLIC_URL, when
it started and was last seen), so that commands sharing the database find the server.
"""

import sqlalchemy as sa
from alembic import op

revision = "d4c3b2a1f0e9"
down_revision = "a1d0e2f3c4b5"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "server",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("bind", sa.String(length=255), nullable=False),
        sa.Column("public_url", sa.String(length=2000), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_server")),
    )


def downgrade():
    op.drop_table("server")
