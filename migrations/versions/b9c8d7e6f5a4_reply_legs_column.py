"""reply legs: a column of their own

Revision ID: b9c8d7e6f5a4
Revises: e7a1c3b5d9f2
Create Date: 2026-12-06 09:00:00

A reply's channel legs move out of `raw_body` (which holds a provider's bytes, and a reply has
none) into `legs`, JSON; the replies' `raw_body` becomes empty. A plain ADD COLUMN and one
UPDATE: `message` is not rebuilt (on SQLite that would drop its text search triggers).
"""

import sqlalchemy as sa
from alembic import op

revision = "b9c8d7e6f5a4"
down_revision = "e7a1c3b5d9f2"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("message", sa.Column("legs", sa.JSON(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "UPDATE message SET legs = json_extract(CAST(raw_body AS TEXT), '$.legs'), raw_body = X'' "
            "WHERE direction = 'out'"
        )
    else:
        op.execute(
            "UPDATE message SET legs = (convert_from(raw_body, 'UTF8')::json -> 'legs'), "
            "raw_body = ''::bytea WHERE direction = 'out'"
        )


def downgrade():
    # A reply without legs gets "{}", as such replies had before.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "UPDATE message SET raw_body = CAST(CASE WHEN legs IS NULL THEN '{}' "
            "ELSE json_object('legs', json(legs)) END AS BLOB) WHERE direction = 'out'"
        )
    else:
        op.execute(
            "UPDATE message SET raw_body = convert_to(CASE WHEN legs IS NULL THEN '{}' "
            "ELSE json_build_object('legs', legs)::text END, 'UTF8') WHERE direction = 'out'"
        )
    op.drop_column("message", "legs")  # ALTER TABLE ... DROP COLUMN, on SQLite too (3.35+)
