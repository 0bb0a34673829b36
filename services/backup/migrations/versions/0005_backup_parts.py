"""a backup's parts: the fingerprints of its snapshot's big tables and the restic snapshot each one's data
is in, so the next backup takes the unchanged ones from there instead of dumping them again
(services/backup/reuse.py)

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("backups", sa.Column("parts", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
                  schema="backup")


def downgrade():
    op.drop_column("backups", "parts", schema="backup")
