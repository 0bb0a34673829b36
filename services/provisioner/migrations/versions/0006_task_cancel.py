"""tasks.cancel_requested_at/_by (shared/tasks.py: CancelColumns): a running task someone asked to cancel

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 03:10:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('tasks', sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True), schema='provisioner')
    op.add_column('tasks', sa.Column('cancel_requested_by', sa.String(length=64), nullable=True), schema='provisioner')


def downgrade():
    op.drop_column('tasks', 'cancel_requested_by', schema='provisioner')
    op.drop_column('tasks', 'cancel_requested_at', schema='provisioner')
