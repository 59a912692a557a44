"""roles, audit trail, retention

Revision ID: b3e58f1c7a62
Revises: c9f2d4a6e81b
Create Date: 2026-11-25 18:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'b3e58f1c7a62'
down_revision = 'c9f2d4a6e81b'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
