"""labels: the team's labels and the conversations they are on

Revision ID: n25labels001
Revises: f7a8b9c0d1e2
Create Date: 2026-12-06 09:00:00

Two new tables, and conversation.label_names (the export's column, kept with them).
"""

import sqlalchemy as sa
from alembic import op

revision = "n25labels001"
down_revision = "n26hours0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.add_column("conversation", sa.Column("label_names", sa.Text(), nullable=True))
    op.create_table(
        "label",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("name_key", sa.String(length=120), nullable=False),
        sa.Column("colour", sa.String(length=8), server_default="grey", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label")),
        sa.UniqueConstraint("name", name=op.f("uq_label_name")),
        sa.UniqueConstraint("name_key", name=op.f("uq_label_name_key")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "conversation_label",
        sa.Column("id", BigId, nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"], ["conversation.id"], name=op.f("fk_conversation_label_conversation_id_conversation")
        ),
        sa.ForeignKeyConstraint(["label_id"], ["label.id"], name=op.f("fk_conversation_label_label_id_label")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_label")),
        sa.UniqueConstraint("conversation_id", "label_id", name=op.f("uq_conversation_label_conversation_id")),
    )
    op.create_index(
        "ix_conversation_label_label_id_conversation_id", "conversation_label", ["label_id", "conversation_id"]
    )


def downgrade():
    op.drop_index("ix_conversation_label_label_id_conversation_id", table_name="conversation_label")
    op.drop_table("conversation_label")
    op.drop_table("label")
    op.drop_column("conversation", "label_names")
