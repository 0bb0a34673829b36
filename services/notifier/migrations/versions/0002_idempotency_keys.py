"""idempotency_keys: the first answer of each create sent with an Idempotency-Key

Revision ID: 0002
Revises: 0001
"""
from alembic import op

from shared.idempotency import create_in_migration

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    create_in_migration(op, "notifier")


def downgrade():
    op.drop_table("idempotency_keys", schema="notifier")
