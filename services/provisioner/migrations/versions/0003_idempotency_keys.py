"""idempotency_keys: the first answer of each create sent with an Idempotency-Key

Revision ID: 0003
Revises: 0002
"""
from alembic import op

from shared.idempotency import create_in_migration

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    create_in_migration(op, "provisioner")


def downgrade():
    op.drop_table("idempotency_keys", schema="provisioner")
