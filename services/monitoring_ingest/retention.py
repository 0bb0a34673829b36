"""Retention: drop whole partitions older than the settings, never DELETE rows.

Raw data is kept ``raw_retention_minutes``, aggregates ``aggregated_retention_days``
(inventory's effective monitoring settings). A server may keep its data longer
(``retention_overrides``): partitions hold every server's rows, so a partition
goes only when it is older than the longest retention any server needs (the
others' rows then live as long). One replica runs at a time (advisory lock).
"""
from datetime import timedelta

from sqlalchemy import text

from services.monitoring_ingest import partitions

LOCK_KEY = "steward-monitoring-retention"


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

