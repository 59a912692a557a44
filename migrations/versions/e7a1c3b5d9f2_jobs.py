"""jobs: the job table, a shared rate budget, runner heartbeats on server rows

Revision ID: e7a1c3b5d9f2
Revises: c3f2e1d0b9a8
Create Date: 2026-12-06 03:45:00

Background work as rows committed with their cause (app/jobs/). Replies left queued by the
version before get their send job here, so they go out once a runner starts.
"""

import sqlalchemy as sa
from alembic import op

revision = "e7a1c3b5d9f2"
down_revision = "c3f2e1d0b9a8"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "job",
        sa.Column("id", BigId, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), server_default="{}", nullable=False),
        sa.Column("key", sa.String(length=80), nullable=True),
        sa.Column("state", sa.String(length=8), server_default="due", nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("leased_until", sa.DateTime(), nullable=True),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_job_state_due_at", "job", ["state", "due_at"])
    op.create_index("ix_job_key_id", "job", ["key", "id"])
    op.create_table(
        "rate_budget",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rate_budget")),
    )
    with op.batch_alter_table("server") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=10), server_default="server", nullable=False))
        batch.add_column(sa.Column("runner_seen_at", sa.DateTime(), nullable=True))
    op.execute(
        "INSERT INTO job (kind, payload, key, state, due_at, attempts, created_at) "
        "SELECT 'send_reply', '{\"reply\": ' || id || '}', 'conversation:' || conversation_id, 'due', "
        "received_at, 0, received_at FROM message WHERE status = 'queued' ORDER BY id"
    )


def downgrade():
    with op.batch_alter_table("server") as batch:
        batch.drop_column("runner_seen_at")
        batch.drop_column("kind")
    op.drop_table("rate_budget")
    op.drop_index("ix_job_key_id", table_name="job")
    op.drop_index("ix_job_state_due_at", table_name="job")
    op.drop_table("job")
