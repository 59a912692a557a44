"""login throttle by (username, client address), with expiry

Revision ID: 7c3f2a9d4e10
Revises: 5e9a1c0b7d21
Create Date: 2026-11-25 16:30:00

Failed logins are counted per (username, client address) and per address, instead of per
username alone (which let anyone lock anyone out). The rows are transient, so the table is
dropped and made anew: pending delays and lockouts are forgotten once, at the upgrade.
"""

import sqlalchemy as sa
from alembic import op

revision = "7c3f2a9d4e10"
down_revision = "5e9a1c0b7d21"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_table("login_throttle")
    op.create_table(
        "login_throttle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_throttle")),
        sa.UniqueConstraint("username", "address", name=op.f("uq_login_throttle_username")),
    )
    op.create_index(op.f("ix_login_throttle_expires_at"), "login_throttle", ["expires_at"])


def downgrade():
    op.drop_index(op.f("ix_login_throttle_expires_at"), table_name="login_throttle")
    op.drop_table("login_throttle")
    op.create_table(
        "login_throttle",
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_login_throttle")),
    )
