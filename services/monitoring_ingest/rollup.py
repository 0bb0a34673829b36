"""Hourly aggregates, rolled up from the per-minute ones once an hour has closed.

The ingest path writes the per-minute aggregates only: upserting the hour as
well, for every message, was a third of its database work. Here, an hour
``GRACE`` after it ended, its hourly rows are computed from its minute rows
and replace whatever was there, so running it twice changes nothing.

Data can still arrive for a past hour (an agent's spooled backlog). The
batch that stores it marks the hour dirty (``rollup_dirty``, with a new
``version`` each time), in the transaction that writes its minute rows; the
next run rolls the hour up again and clears the mark only if its version is
still the one it read. A batch that commits while a run is on that hour has
marked it anew (or waits for the run's delete and inserts a fresh mark), so
its rows are rolled up by the next run: nothing needs a lock against ingest.

Until an hour is rolled up, and while it is dirty, readers take it from the
minute rows (``hour_sources``), so series read the same before and after.
One replica runs at a time (advisory lock).
"""
from datetime import timedelta

from sqlalchemy import text

LOCK_KEY = "steward-monitoring-rollup"
GRACE = timedelta(minutes=5)
HOUR = timedelta(hours=1)

# Past hours a batch touched (the current hour is not "past": it is rolled up once it closes).
MARK_DIRTY = text("""
INSERT INTO monitoring.rollup_dirty (hour, version)
SELECT h, nextval('monitoring.rollup_dirty_version') FROM unnest(CAST(:hours AS timestamptz[])) AS h
WHERE h < date_trunc('hour', now(), 'UTC')
ON CONFLICT (hour) DO UPDATE SET version = excluded.version
""")

_WINDOW = "resolution = 'minute' AND bucket >= :hour AND bucket < CAST(:hour AS timestamptz) + interval '1 hour'"

_ROLLUPS = (
    text(f"""
    INSERT INTO monitoring.system_aggregates AS a (resolution, server_id, bucket, samples, load1_sum, load5_sum,
        load15_sum, memory_used_sum, memory_total_max, swap_used_sum, connections_established_sum,
        disk_used_max_percent)
    SELECT 'hour', server_id, :hour, sum(samples), sum(load1_sum), sum(load5_sum), sum(load15_sum),
        sum(memory_used_sum), max(memory_total_max), sum(swap_used_sum), sum(connections_established_sum),
        max(disk_used_max_percent)
    FROM monitoring.system_aggregates WHERE {_WINDOW}
    GROUP BY server_id
    ON CONFLICT (resolution, server_id, bucket) DO UPDATE SET
        samples = excluded.samples, load1_sum = excluded.load1_sum, load5_sum = excluded.load5_sum,
        load15_sum = excluded.load15_sum, memory_used_sum = excluded.memory_used_sum,
        memory_total_max = excluded.memory_total_max, swap_used_sum = excluded.swap_used_sum,
        connections_established_sum = excluded.connections_established_sum,
        disk_used_max_percent = excluded.disk_used_max_percent
    """),
    text(f"""
    INSERT INTO monitoring.dns_aggregates AS a (resolution, server_id, bucket, total)
    SELECT 'hour', server_id, :hour, sum(total) FROM monitoring.dns_aggregates WHERE {_WINDOW}
    GROUP BY server_id
    ON CONFLICT (resolution, server_id, bucket) DO UPDATE SET total = excluded.total
    """),
    text(f"""
    INSERT INTO monitoring.dns_record_aggregates AS a (resolution, name, type, server_id, bucket, hits, last_access)
    SELECT 'hour', name, type, server_id, :hour, sum(hits), max(last_access)
    FROM monitoring.dns_record_aggregates WHERE {_WINDOW}
    GROUP BY name, type, server_id
    ON CONFLICT (resolution, name, type, server_id, bucket) DO UPDATE SET
        hits = excluded.hits, last_access = excluded.last_access
    """),
)


_ROLLED_UNTIL = "(SELECT rolled_until FROM monitoring.rollup_state WHERE id = 1)"
_OLDEST_MINUTE = """
SELECT date_trunc('hour', min(bucket), 'UTC') FROM (
    SELECT min(bucket) AS bucket FROM monitoring.system_aggregates WHERE resolution = 'minute'
    UNION ALL SELECT min(bucket) FROM monitoring.dns_aggregates WHERE resolution = 'minute'
) AS oldest
"""


def roll_up_hour(connection, hour):
    """(Re)compute one hour's hourly rows from its minute rows, in the caller's transaction."""
    for statement in _ROLLUPS:
        connection.execute(statement, {"hour": hour})


def run(engine):
    """Roll up the hours that closed since the last run and the dirty ones; the hours done,
    or None when another replica is on it."""
    with engine.connect() as connection:
        locked = connection.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": LOCK_KEY}).scalar()
        connection.commit()  # a session lock: it outlives this transaction, and each hour has its own
        if not locked:
            return None
        try:
            with connection.begin():
                closed_before, rolled_until = connection.execute(text(
                    f"SELECT date_trunc('hour', now() - CAST(:grace AS interval), 'UTC'), {_ROLLED_UNTIL}"),
                    {"grace": f"{GRACE.total_seconds()} seconds"}).one()
                if rolled_until is None:  # no state row (the migration makes one): from the oldest minute
                    rolled_until = connection.execute(text(_OLDEST_MINUTE)).scalar() or closed_before
                dirty = dict(connection.execute(text(
                    "SELECT hour, version FROM monitoring.rollup_dirty WHERE hour < :closed"),
                    {"closed": closed_before}).all())
            hours, moment = set(dirty), rolled_until
            while moment < closed_before:
                hours.add(moment)
                moment += HOUR
            for hour in sorted(hours):
                with connection.begin():
                    roll_up_hour(connection, hour)
                    if hour in dirty:
                        connection.execute(text(
                            "DELETE FROM monitoring.rollup_dirty WHERE hour = :hour AND version = :version"),
                            {"hour": hour, "version": dirty[hour]})
                    if hour >= rolled_until:
                        connection.execute(text(
                            "INSERT INTO monitoring.rollup_state (id, rolled_until) VALUES (1, :until) "
                            "ON CONFLICT (id) DO UPDATE SET rolled_until = excluded.rolled_until"),
                            {"until": hour + HOUR})
            return sorted(hours)
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": LOCK_KEY})
            connection.commit()


def aggregate_rows(connection, table, resolution):
    """SQL (with its parameters) for ``table``'s rows at ``resolution``, to select from.

    For hours: the hourly rows where they are complete, and the minute rows of
    the hours not rolled up yet or dirty; sums, maxima and sample counts
    grouped on the reader's step come out the same either way.
    """
    minutes = f"(SELECT * FROM monitoring.{table} WHERE resolution = 'minute')", {}
    if resolution != "hour":
        return minutes
    rolled_until = connection.execute(text(f"SELECT {_ROLLED_UNTIL}")).scalar()
    if rolled_until is None:  # no state row (the migration makes one): nothing was rolled up
        return minutes
    dirty = connection.execute(text("SELECT hour FROM monitoring.rollup_dirty")).scalars().all()
    sql = f"""(
        SELECT * FROM monitoring.{table} WHERE resolution = 'hour' AND bucket < :rolled_until
            AND bucket <> ALL(CAST(:dirty_hours AS timestamptz[]))
        UNION ALL
        SELECT * FROM monitoring.{table} WHERE resolution = 'minute' AND (bucket >= :rolled_until
            OR date_trunc('hour', bucket, 'UTC') = ANY(CAST(:dirty_hours AS timestamptz[])))
    )"""
    return sql, {"rolled_until": rolled_until, "dirty_hours": list(dirty)}
