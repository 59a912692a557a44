"""api tokens: tokens for /api/v1, the answers kept for idempotency keys, per-token rate windows,
and the token that sent a message

Revision ID: n27tokens001
Revises: f7a8b9c0d1e2
Create Date: 2026-12-14 09:00:00

Three new tables, and a plain ADD COLUMN on `message` (not rebuilt: on SQLite that would drop its
text search triggers), so on SQLite the foreign key is written in the column's own definition.
"""

import sqlalchemy as sa
from alembic import op

revision = "n27tokens001"
down_revision = "n25labels001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("name", name=op.f("uq_api_token_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_token_token_hash")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "api_idempotency",
        sa.Column("id", BigId, nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["api_token.id"], name=op.f("fk_api_idempotency_token_id_api_token")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_idempotency")),
        sa.UniqueConstraint("token_id", "key", name=op.f("uq_api_idempotency_token_id")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_api_idempotency_created_at"), "api_idempotency", ["created_at"])
    op.create_table(
        "api_rate_window",
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("window", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["api_token.id"], name=op.f("fk_api_rate_window_token_id_api_token")),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_api_rate_window")),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE message ADD COLUMN api_token_id INTEGER REFERENCES api_token (id)")
    else:
        op.add_column("message", sa.Column("api_token_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f("fk_message_api_token_id_api_token"), "message", "api_token", ["api_token_id"], ["id"]
        )


def downgrade():
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("fk_message_api_token_id_api_token"), "message", type_="foreignkey")
    op.drop_column("message", "api_token_id")  # ALTER TABLE ... DROP COLUMN, on SQLite too (3.35+)
    op.drop_table("api_rate_window")
    op.drop_index(op.f("ix_api_idempotency_created_at"), table_name="api_idempotency")
    op.drop_table("api_idempotency")
    op.drop_table("api_token")
