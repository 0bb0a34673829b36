"""the transactional outbox of the events it emits, and the ids of the events it handled

Revision ID: 0005
Revises: 0004
"""
from shared.outbox import outbox_table, processed_events_table, migration

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

upgrade, downgrade = migration("monitoring", outbox_table, processed_events_table)
