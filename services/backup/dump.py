"""What a backup holds: one pg_dump of every Steward schema, taken in one transaction (so one
consistent snapshot: the settings and the sealed keys are rows in those schemas), streamed into
restic without touching the disk; and the way back, restic's dump streamed into pg_restore."""
import os
import re
import subprocess

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.backup.exceptions import EngineFailed

# monitoring-ingest's raw tables (and their hourly partitions): their rows are left out unless the
# settings ask for them (include_monitoring_raw); the aggregates are always in.
MONITORING_RAW = ("monitoring.heartbeats*", "monitoring.system_samples*", "monitoring.dns_periods*")
SCRATCH_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def libpq_environment(database_url, database=None):
    """libpq's variables for ``database_url``: the password never appears in a command line."""
    url = make_url(database_url)
    env = dict(os.environ, PGHOST=url.host or "127.0.0.1", PGPORT=str(url.port or 5432), PGUSER=url.username or "postgres",
               PGDATABASE=database or url.database)
    if url.password:
        env["PGPASSWORD"] = url.password
    return env


def steward_schemas(database_url):
    """Every Steward schema in the database: each service's migrations keep their version table in its own."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return tuple(connection.execute(text(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'alembic_version' "
                "AND table_schema NOT IN ('public', 'pg_catalog') ORDER BY 1")).scalars())
    finally:
        engine.dispose()


def dump_command(schemas, include_monitoring_raw):
    argv = ["pg_dump", "--format=custom", "--compress=0", "--no-owner", "--no-privileges"]
    # The extensions too (pg_trgm for inventory's search index): a schema alone does not bring them along.
    argv += [f"--schema={schema}" for schema in schemas] + ["--extension=*"]
    if not include_monitoring_raw:
        argv += [f"--exclude-table-data={pattern}" for pattern in MONITORING_RAW]
    return argv


def back_up(repository, database_url, schemas, include_monitoring_raw=False, taken_at=None, tags=()):
    """pg_dump | restic backup; returns restic's summary. Neither side writes a plaintext file."""
    dump = subprocess.Popen(dump_command(schemas, include_monitoring_raw), env=libpq_environment(database_url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        summary = repository.backup(dump.stdout, taken_at=taken_at, tags=tags)
    except BaseException:
        dump.kill()
        raise
    finally:
        dump.stdout.close()
        errors = dump.stderr.read().decode(errors="replace")
        dump.wait()
    if dump.returncode:
        # restic stored a snapshot of a cut dump: it must not stand as a backup.
        raise EngineFailed(f"pg_dump failed: {errors.strip()[-2000:]}", summary.get("snapshot_id"))
    return summary


def _on_server(database_url, statement, name):
    if not SCRATCH_NAME.match(name):
        raise ValueError(f"{name!r} is not a plain database name")
    engine = create_engine(make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(statement.format(name=name)))
    finally:
        engine.dispose()


def create_scratch(database_url, name):
    _on_server(database_url, 'CREATE DATABASE "{name}"', name)


def drop_scratch(database_url, name):
    _on_server(database_url, 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', name)


def restore(repository, snapshot_id, database_url, into, clean=False):
    """restic dump | pg_restore into the database ``into``; returns what pg_restore said."""
    argv = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", f"--dbname={into}"]
    if clean:
        argv += ["--clean", "--if-exists"]
    restore_process = subprocess.Popen(argv, env=libpq_environment(database_url, into), stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dump_process = repository.dump(snapshot_id, restore_process.stdin)
    restore_process.stdin.close()  # restic holds the pipe now: pg_restore sees its end when restic ends
    restore_process.stdin = None
    dump_errors = dump_process.stderr.read().decode(errors="replace")
    dump_process.wait()
    out, errors = restore_process.communicate()
    # pg_restore first: when it stops early, restic only dies of the closed pipe.
    if restore_process.returncode:
        raise EngineFailed(f"pg_restore failed: {errors.decode(errors='replace').strip()[-2000:]}")
    if dump_process.returncode:
        raise EngineFailed(f"restic could not read the backup: {dump_errors.strip()[-2000:]}")
    return (out + errors).decode(errors="replace")


def schema_tables(database_url, database, schemas):
    """{schema: tables} in ``database``: what a restore into it shows."""
    engine = create_engine(make_url(database_url).set(database=database))
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT table_schema, count(*) FROM information_schema.tables "
                                           "WHERE table_schema = ANY(:schemas) GROUP BY table_schema"),
                                      {"schemas": list(schemas)})
            return dict(rows.all())
    finally:
        engine.dispose()
