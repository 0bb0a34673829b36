"""api_tokens keeps half of each page free, so that refreshing last_used_at is a HOT update

Every agent token's last_used_at is refreshed once a minute (a gateway's agent_tokens_used report).
With full pages each refresh wrote a new row version elsewhere and a new entry in every index of
the table (primary key, token hash, user, server): 730-840 ms for 20,000 tokens. With room on the
page the new version stays beside the old one and no index changes (heap-only tuple): 58-115 ms
(docs/decisions.md). The setting acts on the pages written from now on: an existing table's first
refresh moves its rows to such pages, and from the next one the refreshes are HOT; no rewrite is needed.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE inventory.api_tokens SET (fillfactor = 50)")


def downgrade():
    op.execute("ALTER TABLE inventory.api_tokens RESET (fillfactor)")
