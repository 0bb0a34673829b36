"""Time partitions: created ahead of the data, dropped whole when expired.

Raw tables get one partition per hour (``heartbeats_p2026112410`` holds
[10:00, 11:00) UTC), aggregate tables one per day (``dns_aggregates_p20261124``).
Retention never deletes rows: a partition goes when its whole range is older
than the retention, so dropping is instant and leaves no bloat.
"""
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from services.monitoring_ingest.models import AGGREGATE_TABLES, RAW_TABLES

SCHEMA = "monitoring"
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
_SUFFIX = re.compile(r"_p(\d{8}|\d{10})$")


@dataclass(frozen=True)
class Layout:
    tables: tuple
    width: timedelta
    suffix_format: str

    def start_of(self, moment):
        moment = moment.astimezone(timezone.utc)
        if self.width == HOUR:
            return moment.replace(minute=0, second=0, microsecond=0)
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)

    def name(self, table, start):
        return f"{table}_p{start.strftime(self.suffix_format)}"


RAW = Layout(RAW_TABLES, HOUR, "%Y%m%d%H")
AGGREGATES = Layout(AGGREGATE_TABLES, DAY, "%Y%m%d")


def _start_from_name(name):
    digits = _SUFFIX.search(name).group(1)
    return datetime.strptime(digits, "%Y%m%d%H" if len(digits) == 10 else "%Y%m%d").replace(tzinfo=timezone.utc)


def create_partition(connection, layout, table, start):
    """Idempotent; concurrent creators take turns on an advisory lock for the table."""
    name = layout.name(table, start)
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"steward-partition-{table}"})
    connection.execute(text(
        f'CREATE TABLE IF NOT EXISTS {SCHEMA}."{name}" PARTITION OF {SCHEMA}."{table}" '
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + layout.width).isoformat()}')"
    ))
    return name


def ensure_ahead(connection, now, raw_hours_ahead=3, aggregate_days_ahead=2):
    """The partitions from the current hour (day) to a few ahead, for every table."""
    created = []
    for layout, count in ((RAW, raw_hours_ahead), (AGGREGATES, aggregate_days_ahead)):
        first = layout.start_of(now)
        for table in layout.tables:
            for step in range(count + 1):
                created.append(create_partition(connection, layout, table, first + step * layout.width))
    return created


def missing(moments, known):
    """(layout, table, start) of each partition that data at ``moments`` needs and ``known`` does not list."""
    hours = {RAW.start_of(m) for m in moments}
    days = {AGGREGATES.start_of(h) for h in hours}
    return [(layout, table, start) for layout, starts in ((RAW, hours), (AGGREGATES, days))
            for start in starts for table in layout.tables if layout.name(table, start) not in known]


def ensure_covering(connection, moments, known):
    """Partitions for data at ``moments`` (a late or early batch); ``known`` caches names already there."""
    for layout, table, start in missing(moments, known):
        known.add(create_partition(connection, layout, table, start))


def existing(connection, table):
    """(name, start) of every partition of ``table``, oldest first."""
    names = connection.execute(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE n.nspname = :schema AND p.relname = :table"
    ), {"schema": SCHEMA, "table": table}).scalars().all()
    return sorted(((name, _start_from_name(name)) for name in names if _SUFFIX.search(name)), key=lambda x: x[1])


def expired(connection, layout, cutoff):
    """Partitions whose whole range ends at or before ``cutoff``."""
    return [
        name for table in layout.tables for name, start in existing(connection, table) if start + layout.width <= cutoff
    ]


def drop(connection, names):
    for name in names:
        connection.execute(text(f'DROP TABLE IF EXISTS {SCHEMA}."{name}"'))
