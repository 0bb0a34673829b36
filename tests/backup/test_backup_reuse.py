"""A backup takes the tables that provably did not change from the last backup instead of dumping them
again (services/backup/reuse.py), catches every kind of change, and a restore rebuilds the whole
database from the parts; restic keeps a deleted backup's snapshot while a kept backup reuses it."""
import contextlib
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.backup.backups import Backups, Progress
from services.backup.exceptions import EngineFailed
from services.monitoring_ingest import partitions
from tests.backup.test_retention_schedules import runner_of
from tests.waiting import wait_for

PROBES = ("same", "inserted", "swapped", "updated", "frozen", "altered", "late")
# Each probe_<kind> is monitoring's; inventory.probe_same shares a name with one and changes.
PROBE_TABLES = [f"monitoring.probe_{probe}" for probe in PROBES] + ["inventory.probe_same"]


class Steps(Progress):
    """A run's progress outside a task; ``after(name)`` runs as each step ends."""

    def __init__(self, after=lambda name: None):
        super().__init__()
        self.after = after

    @contextlib.contextmanager
    def step(self, name):
        with super().step(name) as say:
            yield say
        self.after(name)


@pytest.fixture
def backups(backup_service, settings):
    """The service's own Backups, reusing every table however small (the tests' tables are)."""
    runner = runner_of(backup_service)
    return Backups(runner.Session, runner.servers, runner.keyring, settings.database_url, None,
                   lambda: datetime.now(timezone.utc), reuse_min_bytes=0)


@pytest.fixture
def probes(engine):
    """PROBE_TABLES, of 100 rows each; dropped on the way out."""
    with engine.begin() as connection:
        for table in PROBE_TABLES:
            connection.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, value text)"))
            connection.execute(text(f"INSERT INTO {table} SELECT i, md5(i::text) FROM generate_series(1, 100) AS i"))
    yield
    with engine.begin() as connection:
        for table in PROBE_TABLES:
            connection.execute(text(f"DROP TABLE {table}"))


def settled(engine):
    """Wait until every transaction older than the rows written so far has ended, on the whole server.

    A table is reused only if its rows are provably older than the last backup's snapshot (its ``xmin``), and
    other test runs share this PostgreSQL server: one of their transactions open across this test's writes
    would rightly keep the next backup from proving it. The tests below need the proof to be possible."""
    with engine.begin() as connection:
        mark = str(connection.execute(text("SELECT pg_current_xact_id()")).scalar())

    def passed():
        with engine.connect() as connection:
            return connection.execute(text("SELECT pg_snapshot_xmin(pg_current_snapshot()) > CAST(:mark AS xid8)"),
                                      {"mark": mark}).scalar()
    wait_for(passed, timeout=60, interval=0.2, what="the transactions older than the test's writes to end")


def parts_of(engine, backup):
    with engine.connect() as connection:
        return connection.execute(text("SELECT parts FROM backup.backups WHERE id = :id"), {"id": backup["id"]}).scalar()


def content(engine, tables):
    """{table: (rows, md5 of them in order)}."""
    with engine.connect() as connection:
        return {table: tuple(connection.execute(text(
            f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t")).one())
            for table in tables}


@contextlib.contextmanager
def restored(backups, backup, settings, name="reuse_restored"):
    """An engine on a scratch database the backup was restored into."""
    scratch = f"{make_url(settings.database_url).database}_{name}"
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", scratch], check=True)
    backups.restore(backup["id"], scratch, Steps())
    engine = create_engine(make_url(settings.database_url).set(database=scratch))
    try:
        yield engine
    finally:
        engine.dispose()
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", scratch], check=True)


def test_an_unchanged_day_of_aggregates_is_reused_and_a_restore_rebuilds_everything(
        backup_server, backups, engine, settings):
    registered, _ = backup_server
    yesterday = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    with engine.begin() as connection:
        partitions.ensure_ahead(connection, yesterday, raw_hours_ahead=0, aggregate_days_ahead=1)
        connection.execute(text(
            "INSERT INTO monitoring.system_aggregates (resolution, server_id, bucket, samples, load1_sum, load5_sum, "
            "load15_sum, memory_used_sum, memory_total_max, swap_used_sum, connections_established_sum, "
            "disk_used_max_percent) SELECT 'minute', s, :day + m * interval '1 minute', 1, m, m, m, m, 4000, 0, s, 50 "
            "FROM generate_series(1, 3) AS s, generate_series(0, 2879) AS m"), {"day": yesterday})
    day = f"monitoring.{partitions.AGGREGATES.name('system_aggregates', yesterday)}"
    today = f"monitoring.{partitions.AGGREGATES.name('system_aggregates', yesterday + timedelta(days=1))}"

    settled(engine)
    first = backups.run(registered["id"], Steps())
    every = _tables(engine)
    before = content(engine, every)
    second = backups.run(registered["id"], Steps())
    tables = parts_of(engine, second)["tables"]
    assert tables[day]["snapshot_id"] == tables[today]["snapshot_id"] == first["snapshot_id"]
    # The day's 4,320 minute rows, and any hour rows the session's rollup made of them before the first backup:
    # the part records what the table held, which is what it held at the first backup, since it was reused.
    assert tables[day]["rows"] == before[day][0] >= 4320 and second["size_bytes"] < first["size_bytes"] // 2
    # The backup row the first run listed changed the catalogue: dumped again.
    assert tables["backup.backups"]["snapshot_id"] == second["snapshot_id"]

    with engine.connect() as connection:
        indexes = connection.execute(text(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'monitoring'")).scalar()
    with restored(backups, second, settings) as scratch:
        after = content(engine, every)
        # A table the same before the second backup and after its restore was the same at its snapshot: the
        # restore has it as it is. The session's services keep writing a few others meanwhile (the liveness
        # sweep, heartbeats of earlier tests' agents, token use): no moment to compare those with.
        still = [table for table in every if before[table] == after[table]]
        assert len(still) >= len(every) - 8, sorted(set(every) - set(still))
        assert content(scratch, still) == {table: after[table] for table in still}
        # The reused day is restored as both backups hold it: unchanged from the first backup to the second
        # (it was reused), so as it was just before the second, whatever the session's rollup wrote to it since.
        assert content(scratch, [day]) == {day: before[day]}
        with scratch.connect() as connection:  # the post-data came after the rows: indexes and keys
            assert connection.execute(text("SELECT count(*) FROM pg_indexes WHERE schemaname = 'monitoring'")).scalar() \
                == indexes
            assert connection.execute(text("SELECT count(*) FROM backup.backups")).scalar() == 1

    # A backup verification found bad is no base: the next one dumps everything again.
    with engine.begin() as connection:
        connection.execute(text("UPDATE backup.backups SET verification = 'bad' WHERE id = :id"), {"id": second["id"]})
    third = backups.run(registered["id"], Steps())
    assert {t["snapshot_id"] for t in parts_of(engine, third)["tables"].values()} == {third["snapshot_id"]}


def _tables(engine):
    """Monitoring's and inventory's tables, but for the bookkeeping no restore is compared on."""
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('monitoring', 'inventory') AND c.relkind = 'r' AND c.relname NOT IN "
            "('outbox', 'processed_events', 'leases', 'idempotency_keys')")).scalars().all()


def test_every_kind_of_change_is_dumped_again(backup_server, backups, engine, settings, probes):
    registered, _ = backup_server
    settled(engine)
    late = engine.connect()
    try:
        # A transaction that began before the first backup and commits after it: its rows' ids are older than
        # that backup's own transaction, yet that backup could not see them.
        late.execute(text("DELETE FROM monitoring.probe_late WHERE id = 1"))
        late.execute(text("INSERT INTO monitoring.probe_late VALUES (101, 'committed after the first backup')"))
        first = backups.run(registered["id"], Steps())
        late.commit()
    finally:
        late.close()
    with engine.begin() as connection:
        for table in ("monitoring.probe_inserted", "inventory.probe_same"):
            connection.execute(text(f"INSERT INTO {table} VALUES (101, 'new')"))
        for probe in ("swapped", "frozen"):  # as many rows as before
            connection.execute(text(f"DELETE FROM monitoring.probe_{probe} WHERE id = 1"))
            connection.execute(text(f"INSERT INTO monitoring.probe_{probe} VALUES (101, 'instead of 1')"))
        connection.execute(text("UPDATE monitoring.probe_updated SET value = 'changed' WHERE id = 50"))
        connection.execute(text("ALTER TABLE monitoring.probe_altered ADD COLUMN weight int DEFAULT 7"))  # no rewrite
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM FREEZE monitoring.probe_frozen"))

    second = backups.run(registered["id"], Steps())
    tables = parts_of(engine, second)["tables"]
    taken = {probe: tables[f"monitoring.probe_{probe}"]["snapshot_id"] for probe in PROBES}
    assert taken == dict({probe: second["snapshot_id"] for probe in PROBES}, same=first["snapshot_id"])
    # The first backup's stream holds inventory.probe_same's old rows too: they must not come back from it.
    assert tables["inventory.probe_same"]["snapshot_id"] == second["snapshot_id"]
    assert tables["inventory.groups"]["snapshot_id"] == first["snapshot_id"]
    with restored(backups, second, settings) as scratch:
        assert content(scratch, PROBE_TABLES) == content(engine, PROBE_TABLES)


def test_a_deleted_backups_snapshot_stays_while_a_kept_backup_reuses_it(backup_server, backups, engine, settings,
                                                                         probes):
    registered, daemon = backup_server

    def snapshots():  # as stored on the backup server
        return {p.name[:8] for p in (daemon.repository_dir("steward") / "snapshots").iterdir()}

    settled(engine)
    first = backups.run(registered["id"], Steps())
    second = backups.run(registered["id"], Steps())
    backups.delete(first["id"])
    assert snapshots() == {first["snapshot_id"][:8], second["snapshot_id"][:8]}
    with restored(backups, second, settings) as scratch:
        assert content(scratch, ["monitoring.probe_same"]) == content(engine, ["monitoring.probe_same"])

    # A delete while a backup runs, of the snapshot it reuses: the backup fails rather than list what is gone.
    def delete_the_base(step):
        if step == "dump_and_store":
            backups.delete(second["id"])

    with pytest.raises(EngineFailed, match="were deleted while it ran"):
        backups.run(registered["id"], Steps(delete_the_base))
    assert backups.list(registered["id"]) == []
    assert first["snapshot_id"][:8] not in snapshots() and second["snapshot_id"][:8] not in snapshots()
