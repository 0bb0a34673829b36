"""the transactional outbox of the events it emits

Revision ID: 0004
Revises: 0003
"""
from shared.outbox import outbox_table, migration

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

upgrade, downgrade = migration("provisioner", outbox_table)
