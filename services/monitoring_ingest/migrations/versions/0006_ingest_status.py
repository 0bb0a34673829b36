"""ingest_status: whether the batch consumer listens, so that liveness judges silence only then

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("ingest_status",
                    sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column("caught_up_at", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("listening_since", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("silence_since", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("quiet_until", sa.DateTime(timezone=True), nullable=True),
                    sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_status")),
                    schema="monitoring")


def downgrade():
    op.drop_table("ingest_status", schema="monitoring")
