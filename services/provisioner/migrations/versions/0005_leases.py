"""leases (shared/leases.py): each replica's lease on the tasks it runs, instead of a session advisory lock

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 00:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('leases',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('renewed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases')),
    schema='provisioner'
    )


def downgrade():
    op.drop_table('leases', schema='provisioner')
