"""two-factor sign-in and device cookies

Revision ID: b2e1f0a9c8d7
Revises: d4c3b2a1f0e9
Create Date: 2026-12-06 03:00:00

Users get a TOTP key and the step of their last code; backup codes get a table; login throttle
rows say what they count (an address, an account from unknown devices, or a device cookie).
"""

import sqlalchemy as sa
from alembic import op

revision = "b2e1f0a9c8d7"
down_revision = "d4c3b2a1f0e9"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("user", sa.Column("totp_secret", sa.String(length=64), nullable=True))
    op.add_column("user", sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    op.add_column("login_throttle", sa.Column("kind", sa.String(length=8), server_default="address", nullable=False))
    op.create_table(
        "backup_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_backup_code_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_code")),
    )
    op.create_index(op.f("ix_backup_code_user_id"), "backup_code", ["user_id"])


def downgrade():
    op.drop_index(op.f("ix_backup_code_user_id"), table_name="backup_code")
    op.drop_table("backup_code")
    with op.batch_alter_table("login_throttle") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("user") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_secret")
