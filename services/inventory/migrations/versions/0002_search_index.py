"""trigram index for the fleet list's search

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    # pg_trgm is a trusted extension: the database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX ix_servers_name_key_trgm ON inventory.servers USING gin (name_key gin_trgm_ops)")


def downgrade():
    # The extension stays: other schemas may use it.
    op.drop_index("ix_servers_name_key_trgm", table_name="servers", schema="inventory")
