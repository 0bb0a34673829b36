"""the transactional outbox of the events it emits, and the ids of the events it handled

Revision ID: 0007
Revises: 0006
"""
from shared.outbox import outbox_table, processed_events_table, migration

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

upgrade, downgrade = migration("inventory", outbox_table, processed_events_table)
