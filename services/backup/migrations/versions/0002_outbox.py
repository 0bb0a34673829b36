"""the transactional outbox of the events it emits

Revision ID: 0002
Revises: 0001
"""
from shared.outbox import outbox_table, migration

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

upgrade, downgrade = migration("backup", outbox_table)
