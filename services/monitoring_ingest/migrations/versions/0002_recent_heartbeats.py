"""liveness keeps the arrival times of its latest heartbeats

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('liveness', sa.Column('recent_heartbeats', postgresql.ARRAY(sa.DateTime(timezone=True)),
                                        server_default=sa.text("'{}'"), nullable=False), schema='monitoring')


def downgrade():
    op.drop_column('liveness', 'recent_heartbeats', schema='monitoring')
