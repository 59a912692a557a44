"""contacts, open/done views, numbers in E.164

Revision ID: a7c41e2b9d30
Revises: 9b8d7e6f5a43
Create Date: 2026-11-25 18:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = 'a7c41e2b9d30'
down_revision = '9b8d7e6f5a43'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
