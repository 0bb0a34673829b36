"""the transactional outbox of the events it emits

Revision ID: 0003
Revises: 0002
"""
from shared.outbox import outbox_table, migration

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

upgrade, downgrade = migration("updater", outbox_table)
