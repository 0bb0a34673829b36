"""make bench-backup: backups of a 10,000-server control plane with a day of monitoring for 1,000 servers.

Its own database (10,000 servers with sealed SSH passwords, each with a server user and three
components; per-minute system aggregates and one system sample a minute, raw, for 1,000 servers
over one day) and a backup-server daemon on 127.0.0.1 with the real restic. The backup service's
own domain code runs the steps (services/backup: BackupServers, KeyRing, Backups) in this process,
without nameko or its task runner. Prints, for the first full backup (raw monitoring included), a
second one of the unchanged database, verification and restore into a scratch database: wall
time, bytes, the CPU seconds of this process and its children (pg_dump, restic, pg_restore, psql;
not PostgreSQL's own backends), and the machine's load average as each began and ended.
"""
import contextlib
import os
import resource
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from bench.common import bench_environment
from bench.gateway import seed as seed_servers
from shared.config import load_settings
from shared.crypto import SecretBox
from shared.db import make_engine
from shared.migrations import upgrade

NAME = "steward_bench_backup"
# Smaller while iterating: STEWARD_BENCH_SERVERS=1000 STEWARD_BENCH_MONITORED=100 make bench-backup
SERVERS = int(os.environ.get("STEWARD_BENCH_SERVERS", 10_000))
MONITORED = int(os.environ.get("STEWARD_BENCH_MONITORED", 1_000))
PASSWORD = "bench managed-backup password"


def seed_monitoring(engine, servers, day):
    """One day of per-minute system aggregates and raw samples (one a minute) for ``servers`` servers."""
    from services.monitoring_ingest import partitions

    with engine.begin() as connection:
        partitions.ensure_ahead(connection, day, raw_hours_ahead=24, aggregate_days_ahead=0)
        connection.execute(text(
            "UPDATE inventory.servers SET ssh_password_sealed = :sealed"), {"sealed": SecretBox("bench-secret").seal("pw")})
        connection.execute(text(
            "INSERT INTO monitoring.system_aggregates (resolution, server_id, bucket, samples, load1_sum, load5_sum, "
            "load15_sum, memory_used_sum, memory_total_max, swap_used_sum, connections_established_sum, "
            "disk_used_max_percent) "
            "SELECT 'minute', s, :day + m * interval '1 minute', 1, random(), random(), random(), "
            "(random() * 1e9)::bigint, 4000000000, 0, (random() * 100)::int, random() * 100 "
            "FROM generate_series(1, :servers) AS s, generate_series(0, 1439) AS m"), {"day": day, "servers": servers})
        connection.execute(text(
            "INSERT INTO monitoring.system_samples (server_id, seq, collected_at, load1, load5, load15, "
            "memory_total_bytes, memory_used_bytes, memory_available_bytes, swap_total_bytes, swap_used_bytes, "
            "disk_used_max_percent, connections_established, disks, connections) "
            "SELECT s, m, :day + m * interval '1 minute', random(), random(), random(), 4000000000, "
            "(random() * 1e9)::bigint, 2000000000, 0, 0, random() * 100, (random() * 100)::int, "
            "'[{\"mount\": \"/\", \"used_percent\": 42.0}]'::jsonb, '{\"established\": 12}'::jsonb "
            "FROM generate_series(1, :servers) AS s, generate_series(0, 1439) AS m"), {"day": day, "servers": servers})
        connection.execute(text("ANALYZE"))


def cpu_seconds():
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


@contextlib.contextmanager
def measured(label, figures):
    wall, (own, children), load = time.perf_counter(), cpu_seconds(), os.getloadavg()[0]
    yield
    own_after, children_after = cpu_seconds()
    figures[label] = {"seconds": time.perf_counter() - wall, "cpu_self": own_after - own,
                      "cpu_children": children_after - children, "load": f"{load:.1f}->{os.getloadavg()[0]:.1f}"}


def main():
    from services.backup import reuse
    from services.backup.backup_servers import BackupServers
    from services.backup.backups import Backups, Progress
    from services.backup.keys import KeyRing
    from tests.backup.daemon_lab import drop_databases, enrolled_daemon

    name = bench_environment(NAME)["STEWARD_DB_NAME"]
    settings = load_settings()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url, pool_size=2)
    started = time.perf_counter()
    seed_servers(settings.database_url, SERVERS)
    seed_monitoring(engine, MONITORED, datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
                    - timedelta(days=1))
    print(f"seeded {SERVERS} servers and a day of monitoring for {MONITORED} in {time.perf_counter() - started:.1f} s")
    Session = sessionmaker(bind=engine, expire_on_commit=False)
    box = SecretBox(settings.secret_key)
    clock = lambda: datetime.now(timezone.utc)  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="steward-bench-backup-"))
    servers = BackupServers(Session, box, settings.secret_key, clock, cache_dir=str(work / "restic-cache"))
    keyring = KeyRing(Session, box, lambda: PASSWORD, clock)
    backups = Backups(Session, servers, keyring, settings.database_url, None, clock)
    figures = {}
    scratch = f"{name}_restored"
    try:
        with enrolled_daemon(settings.secret_key, 1, work / "daemon") as daemon:
            registered = servers.register({"id": 1, "name": "bench-backup", "address": "127.0.0.1",
                                           "components": [{"name": "backup"}]},
                                          {"port": daemon.port, "include_monitoring_raw": True})
            repository = daemon.repository_dir("steward")
            stored = []
            for label in ("first backup", "second backup (unchanged)"):
                before = sum(p.stat().st_size for p in repository.rglob("*") if p.is_file())
                with measured(label, figures):
                    stored.append(backups.run(registered["id"], Progress()))
                after = sum(p.stat().st_size for p in repository.rglob("*") if p.is_file())
                with engine.connect() as connection:
                    parts = connection.execute(text("SELECT parts FROM backup.backups WHERE id = :id"),
                                               {"id": stored[-1]["id"]}).scalar()
                figures[label].update(dump_bytes=stored[-1]["size_bytes"], added_bytes=stored[-1]["added_bytes"],
                                      repository_growth=after - before,
                                      reused_tables=sum(map(len, reuse.reused(parts).values())))
            with measured("verify (server check + restore to scratch)", figures):
                verified = backups.verify(stored[-1]["id"], Progress())
            figures["verify (server check + restore to scratch)"]["result"] = verified["verification"]
            with measured("restore into a scratch database", figures):
                backups.restore(stored[-1]["id"], scratch, Progress())
            restored = make_engine(make_url(settings.database_url).set(database=scratch), pool_size=1)
            with restored.connect() as connection:
                figures["restore into a scratch database"]["servers_restored"] = connection.execute(
                    text("SELECT count(*) FROM inventory.servers")).scalar()
            restored.dispose()
    finally:
        drop_databases(settings.database_url, scratch)
        shutil.rmtree(work, ignore_errors=True)
        engine.dispose()
    for label, values in figures.items():
        print(f"{label}: " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()))
    first, second = figures["first backup"], figures["second backup (unchanged)"]
    print(f"second/first: {100 * second['added_bytes'] / max(first['added_bytes'], 1):.2f} % of the bytes, "
          f"{100 * second['seconds'] / first['seconds']:.1f} % of the time")


if __name__ == "__main__":
    main()
