"""sign_in_failures: failed console sign-ins, which the sign-in limit counts per user name and per address

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("address", sa.String(45), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_failures")),
        schema="inventory",
    )
    for column in ("name", "address", "failed_at"):
        op.create_index(op.f(f"ix_inventory_sign_in_failures_{column}"), "sign_in_failures", [column], schema="inventory")


def downgrade():
    op.drop_table("sign_in_failures", schema="inventory")
