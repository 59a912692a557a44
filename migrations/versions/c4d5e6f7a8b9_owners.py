"""owners: a conversation's assignee, a person's shift

Revision ID: c4d5e6f7a8b9
Revises: b9c8d7e6f5a4
Create Date: 2026-12-10 09:00:00

Plain ADD COLUMNs: `conversation` is not rebuilt (on SQLite that would drop its text search
triggers), so on SQLite the foreign key is written in the column's own definition.
"""

import sqlalchemy as sa
from alembic import op

revision = "c4d5e6f7a8b9"
down_revision = "b9c8d7e6f5a4"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        op.execute('ALTER TABLE conversation ADD COLUMN assignee_id INTEGER REFERENCES "user" (id)')
    else:
        op.add_column("conversation", sa.Column("assignee_id", sa.Integer(), nullable=True))
        op.create_foreign_key(op.f("fk_conversation_assignee_id_user"), "conversation", "user", ["assignee_id"], ["id"])
    op.create_index("ix_conversation_assignee_id_last_message_id", "conversation", ["assignee_id", "last_message_id"])
    op.add_column("user", sa.Column("on_shift", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    op.drop_column("user", "on_shift")
    op.drop_index("ix_conversation_assignee_id_last_message_id", table_name="conversation")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("fk_conversation_assignee_id_user"), "conversation", type_="foreignkey")
    op.drop_column("conversation", "assignee_id")  # ALTER TABLE ... DROP COLUMN, on SQLite too (3.35+)
