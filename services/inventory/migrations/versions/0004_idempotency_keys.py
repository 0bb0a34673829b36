"""idempotency_keys: the first answer of each create sent with an Idempotency-Key

Revision ID: 0004
Revises: 0003
"""
from alembic import op

from shared.idempotency import create_in_migration

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    create_in_migration(op, "inventory")


def downgrade():
    op.drop_table("idempotency_keys", schema="inventory")
