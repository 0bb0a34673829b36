"""servers.communication_type: push or pull per server (null: the monitoring settings' default)

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("servers", sa.Column("communication_type", sa.String(length=8), nullable=True), schema="inventory")


def downgrade():
    op.drop_column("servers", "communication_type", schema="inventory")
