"""roles, sessions per login, audit trail, settings, suppressed numbers

Revision ID: b3e58f1c7a62
Revises: c9f2d4a6e81b
Create Date: 2026-11-25 18:00:00

Users that exist become admins (they could do everything before). Logins move from one token
per user to one row per login, so everyone logs in once more after the upgrade.
"""

import sqlalchemy as sa
from alembic import op

revision = "b3e58f1c7a62"
down_revision = "c9f2d4a6e81b"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("user") as batch:
        batch.drop_column("session_token")
        batch.add_column(sa.Column("role", sa.String(length=8), server_default="agent", nullable=False))
        batch.add_column(sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("reset_token_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("reset_expires_at", sa.DateTime(), nullable=True))
        batch.create_unique_constraint(op.f("uq_user_reset_token_hash"), ["reset_token_hash"])
    op.execute(sa.table("user", sa.column("role")).update().values(role="admin"))

    op.create_table(
        "login_session",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_login_session_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_session")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_login_session_token_hash")),
    )
    op.create_index(op.f("ix_login_session_user_id"), "login_session", ["user_id"])

    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    op.create_index(op.f("ix_audit_event_at"), "audit_event", ["at"])
    op.create_index("ix_audit_event_action_at", "audit_event", ["action", "at"])

    op.create_table(
        "setting",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_setting")),
    )
    op.create_table(
        "suppression",
        sa.Column("number_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("number_hash", name=op.f("pk_suppression")),
    )


def downgrade():
    op.drop_table("suppression")
    op.drop_table("setting")
    op.drop_index("ix_audit_event_action_at", table_name="audit_event")
    op.drop_index(op.f("ix_audit_event_at"), table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_index(op.f("ix_login_session_user_id"), table_name="login_session")
    op.drop_table("login_session")
    with op.batch_alter_table("user") as batch:
        batch.drop_constraint(op.f("uq_user_reset_token_hash"), type_="unique")
        batch.drop_column("reset_expires_at")
        batch.drop_column("reset_token_hash")
        batch.drop_column("disabled")
        batch.drop_column("role")
        batch.add_column(sa.Column("session_token", sa.String(length=64), server_default="", nullable=False))
