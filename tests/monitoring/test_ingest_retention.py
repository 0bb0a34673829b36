"""Retention drops whole partitions older than the settings, at an injected time, and only one replica runs it."""
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from services.monitoring_ingest import partitions, retention
from services.monitoring_ingest.models import AGGREGATE_TABLES, RAW_TABLES

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=timezone.utc)


def _names(engine, table):
    with engine.connect() as connection:
        return [name for name, _ in partitions.existing(connection, table)]


def _make(engine, hours_back, days_back):
    with engine.begin() as connection:
        for hours in range(hours_back + 1):
            start = partitions.RAW.start_of(NOW - timedelta(hours=hours))
            for table in RAW_TABLES:
                partitions.create_partition(connection, partitions.RAW, table, start)
        for days in range(days_back + 1):
            start = partitions.AGGREGATES.start_of(NOW - timedelta(days=days))
            for table in AGGREGATE_TABLES:
                partitions.create_partition(connection, partitions.AGGREGATES, table, start)


def _drop_all(engine):
    with engine.begin() as connection:
        for table in RAW_TABLES + AGGREGATE_TABLES:
            partitions.drop(connection, [name for name, _ in partitions.existing(connection, table)])


def test_retention_drops_exactly_the_expired_partitions(engine):
    _drop_all(engine)
    _make(engine, hours_back=6, days_back=5)
    # Raw kept 150 minutes: the cutoff is 10:00, so [09:00, 10:00) goes and [10:00, 11:00) stays.
    done = retention.run(engine, NOW, raw_retention_minutes=150, aggregated_retention_days=2)

    assert _names(engine, "heartbeats")[0] == "heartbeats_p2026031010"
    assert "heartbeats_p2026031009" in done["dropped"] and "heartbeats_p2026031010" not in done["dropped"]
    # Created ahead: through three hours from now.
    assert _names(engine, "system_samples")[-1] == "system_samples_p2026031015"
    # Aggregates kept 2 days: the cutoff is 03-08 12:30, so 03-07 goes and 03-08 stays.
    assert _names(engine, "dns_aggregates")[0] == "dns_aggregates_p20260308"
    assert _names(engine, "dns_aggregates")[-1] == "dns_aggregates_p20260312"
    assert len(done["dropped"]) == 7 * len(RAW_TABLES) - 3 * len(RAW_TABLES) + 3 * len(AGGREGATE_TABLES)
    assert retention.run(engine, NOW, 150, 2)["dropped"] == []  # nothing more to do


def test_a_longer_per_server_override_keeps_partitions(engine):
    _drop_all(engine)
    _make(engine, hours_back=6, days_back=0)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO monitoring.retention_overrides (server_id, raw_retention_minutes) "
                                "VALUES (1, 300)"))
    done = retention.run(engine, NOW, raw_retention_minutes=60, aggregated_retention_days=2)
    assert done["raw_retention_minutes"] == 300
    assert _names(engine, "heartbeats")[0] == "heartbeats_p2026031007"  # cutoff 07:30: [07:00, 08:00) stays


def test_rows_in_a_dropped_partition_are_gone_and_others_stay(engine):
    _drop_all(engine)
    _make(engine, hours_back=3, days_back=0)
    with engine.begin() as connection:
        for hours in (3, 0):
            connection.execute(text(
                "INSERT INTO monitoring.heartbeats (server_id, seq, collected_at, agent_version, versions) "
                "VALUES (1, :seq, :at, '1.0.0', '{}')"), {"seq": hours, "at": NOW - timedelta(hours=hours)})
    retention.run(engine, NOW, raw_retention_minutes=120, aggregated_retention_days=2)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT seq FROM monitoring.heartbeats")).scalars().all() == [0]


def test_only_one_replica_runs_retention_at_a_time(engine):
    with engine.begin() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": retention.LOCK_KEY})
        assert retention.run(engine, NOW, 150, 2) is None


def test_the_service_runs_retention_with_inventory_settings(rpc, admin, engine, monitoring):
    _drop_all(engine)
    rpc.call("inventory", "update_settings", admin, {"monitoring": {"raw_retention_minutes": 30,
                                                                     "aggregated_retention_days": 1}})
    _make(engine, hours_back=2, days_back=2)
    done = rpc.call("monitoring_ingest", "run_retention", NOW.isoformat())
    assert (done["raw_retention_minutes"], done["aggregated_retention_days"]) == (30, 1)
    assert _names(engine, "heartbeats")[0] == "heartbeats_p2026031012"
    assert _names(engine, "system_aggregates")[0] == "system_aggregates_p20260309"
