"""tasks take the shared shape (shared/tasks.py): requested_by may be empty, params default to {}

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 23:40:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column('tasks', 'requested_by', existing_type=sa.String(length=64), nullable=True, schema='provisioner')
    op.alter_column('tasks', 'params', server_default=sa.text("'{}'::jsonb"), schema='provisioner')


def downgrade():
    op.alter_column('tasks', 'params', server_default=None, schema='provisioner')
    op.execute("UPDATE provisioner.tasks SET requested_by = '' WHERE requested_by IS NULL")
    op.alter_column('tasks', 'requested_by', existing_type=sa.String(length=64), nullable=False, schema='provisioner')
