"""users.password_hash: users sign in to the web console with a password

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
    op.add_column("users", sa.Column("password_hash", sa.Text(), nullable=True), schema="inventory")


def downgrade():
    op.drop_column("users", "password_hash", schema="inventory")
