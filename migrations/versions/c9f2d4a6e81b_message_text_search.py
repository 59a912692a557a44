"""message text search

Revision ID: c9f2d4a6e81b
Revises: a7c41e2b9d30
Create Date: 2026-11-25 18:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'c9f2d4a6e81b'
down_revision = 'a7c41e2b9d30'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
