"""Retention: drop whole partitions older than the settings, never DELETE rows.

Raw data is kept ``raw_retention_minutes``, aggregates ``aggregated_retention_days``
(inventory's effective monitoring settings). A server may keep its data longer
(``retention_overrides``): partitions hold every server's rows, so a partition
goes only when it is older than the longest retention any server needs (the
others' rows then live as long). One replica runs at a time (advisory lock).
"""
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert

from services.monitoring_ingest import partitions
from services.monitoring_ingest.models import RetentionOverride

LOCK_KEY = "steward-monitoring-retention"


def set_override(connection, server_id, raw_retention_minutes=None, aggregated_retention_days=None):
    """Keep one server's data longer than the settings say (None: the settings' value); returns what is stored."""
    values = {"server_id": server_id, "raw_retention_minutes": raw_retention_minutes,
              "aggregated_retention_days": aggregated_retention_days}
    connection.execute(insert(RetentionOverride).values(**values).on_conflict_do_update(
        index_elements=["server_id"], set_={k: v for k, v in values.items() if k != "server_id"}))
    return values


def longest_retention(connection, raw_minutes, aggregated_days):
    row = connection.execute(text(
        "SELECT max(raw_retention_minutes), max(aggregated_retention_days) FROM monitoring.retention_overrides"
    )).one()
    return max(raw_minutes, row[0] or 0), max(aggregated_days, row[1] or 0)


def run(engine, now, raw_retention_minutes, aggregated_retention_days):
    """One retention pass; returns what it did, or None when another replica holds the lock."""
    with engine.begin() as connection:
        if not connection.execute(text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"), {"k": LOCK_KEY}).scalar():
            return None
        created = partitions.ensure_ahead(connection, now)
        raw_minutes, aggregated_days = longest_retention(connection, raw_retention_minutes, aggregated_retention_days)
        dropped = partitions.expired(connection, partitions.RAW, now - timedelta(minutes=raw_minutes))
        dropped += partitions.expired(connection, partitions.AGGREGATES, now - timedelta(days=aggregated_days))
        # A short lock wait: an ingest batch holding a partition finishes in well under this.
        connection.execute(text("SET LOCAL lock_timeout = '10s'"))
        partitions.drop(connection, dropped)
    return {"dropped": dropped, "ensured": len(created), "raw_retention_minutes": raw_minutes,
            "aggregated_retention_days": aggregated_days}

