"""What a backup holds, and the way back, through pipes only: no plaintext file is ever written.

A backup is one restic entry (``steward.parts``) read from one exported snapshot of the database
(a single consistent state: the settings and the sealed keys are rows in the Steward schemas):
a header naming the earlier snapshots whose tables it reuses (reuse.py: tables that provably did
not change are not dumped again), pg_dump's schema archive, then pg_dump's data archive of every
other table. A restore feeds psql, in one transaction: the schema's pre-data, this backup's data,
each reused table's data out of the earlier stream that holds it, then the schema's post-data
(indexes and constraints once the rows are in). Backups from before (``steward.dump``, one
archive) restore through the same psql transaction.
"""
import contextlib
import json
import os
import re
import signal
import subprocess
import time

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.engine import make_url

from services.backup import reuse
from services.backup.engine import PARTS_FILENAME, STDIN_FILENAME
from services.backup.exceptions import EngineFailed

# monitoring-ingest's raw tables (and their hourly partitions): their rows are left out unless the
# settings ask for them (include_monitoring_raw); the aggregates are always in.
MONITORING_RAW = ("monitoring.heartbeats*", "monitoring.system_samples*", "monitoring.dns_periods*")
SCRATCH_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
ARCHIVE = ["--format=custom", "--compress=0", "--no-owner", "--no-privileges"]
# The stream's first line: the length of the JSON header that follows it.
PREFIX, PREFIX_BYTES = b"steward-backup-parts %010d\n", 32
PSQL = ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--single-transaction", "--file=-"]


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


def schema_command(schemas, snapshot):
    # The extensions too (pg_trgm for inventory's search index): a schema alone does not bring them along.
    return (["pg_dump", *ARCHIVE, "--schema-only", f"--snapshot={snapshot}"]
            + [f"--schema={schema}" for schema in schemas] + ["--extension=*"])


def data_command(schemas, snapshot, excluded):
    """pg_dump of every table's rows but ``excluded``'s (patterns)."""
    return (["pg_dump", *ARCHIVE, "--data-only", f"--snapshot={snapshot}"]
            + [f"--schema={schema}" for schema in schemas] + [f"--exclude-table-data={pattern}" for pattern in excluded])


def back_up(repository, database_url, schemas, include_monitoring_raw=False, taken_at=None, tags=(), previous=None,
            reuse_min_bytes=reuse.REUSE_MIN_BYTES, cancellable=contextlib.nullcontext):
    """Back the database up into ``repository``, reusing what provably did not change since ``previous`` (the
    last backup's parts); returns restic's summary (snapshot_id, total_bytes_processed, data_added) with
    ``parts``, this backup's record for the next one. Inside ``cancellable()`` run child processes only."""
    raw = () if include_monitoring_raw else MONITORING_RAW
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            # Open until both dumps are done: they read the snapshot this transaction exports.
            connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            snapshot = connection.execute(text("SELECT pg_export_snapshot()")).scalar()
            parts = reuse.plan(connection, previous, schemas, raw, reuse_min_bytes)
            held = reuse.dumped(connection, schemas, raw, parts)
            env = libpq_environment(database_url)
            with cancellable():
                done = subprocess.run(schema_command(schemas, snapshot), env=env, capture_output=True)
                if done.returncode:
                    raise EngineFailed(f"pg_dump failed: {_said(done.stderr)}")
                header = json.dumps({"format": 1, "schema_bytes": len(done.stdout), "reused": reuse.reused(parts),
                                     "data": held}).encode()
                summary = _store(repository, PREFIX % len(header) + header + done.stdout,
                                 data_command(schemas, snapshot, [*raw, *reuse.excluded_data(parts)]), env, taken_at,
                                 tags)
    finally:
        engine.dispose()
    summary["parts"] = reuse.stored_in(parts, summary["snapshot_id"])
    return summary


def _store(repository, head, dump_argv, env, taken_at, tags):
    """restic reads one pipe: ``head`` (through cat), then pg_dump's archive. This process keeps the pipe's
    write end open until pg_dump ended whole, so restic sees the end of its input, and commits a snapshot,
    only then; otherwise restic is killed first."""
    pipe = _Pipe()
    children = []

    def feed():
        pipe.close("read")  # restic's alone now: a writer gets EPIPE, not a wait, if restic stops
        children.append(subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=pipe.write))
        children[-1].communicate(head)
        if children[-1].returncode:
            raise EngineFailed("the pipe to restic closed")
        children.append(subprocess.Popen(dump_argv, env=env, stdout=pipe.write, stderr=subprocess.PIPE))
        errors = children[-1].communicate()[1]
        if children[-1].returncode:
            raise EngineFailed(f"pg_dump failed: {_said(errors)}")
        pipe.close("write")

    try:
        return repository.backup(pipe.read, taken_at=taken_at, tags=tags, filename=PARTS_FILENAME, feed=feed)
    finally:
        for child in children:
            _stop(child)
        pipe.close()


class _Pipe:
    """os.pipe() whose ends are closed once each: a number closed twice may be another file's by then."""

    def __init__(self):
        self.read, self.write = os.pipe()

    def close(self, *ends):
        for end in ends or ("read", "write"):
            if getattr(self, end) is not None:
                os.close(getattr(self, end))
                setattr(self, end, None)


class _Stream:
    """One backup's stream out of ``restic dump``, read from the start; what is left goes to pg_restore."""

    def __init__(self, repository, snapshot_id, filename):
        self.pipe = _Pipe()
        try:
            self.restic = repository.dump(snapshot_id, self.pipe.write, filename)
        finally:
            self.pipe.close("write")

    def _read(self, count):
        # head -c reads exactly ``count`` bytes of a pipe, leaving the rest to pg_restore.
        done = subprocess.run(["head", "-c", str(count)], stdin=self.pipe.read, capture_output=True)
        if len(done.stdout) != count:
            raise EngineFailed(f"restic could not read the backup: {self.finish() or 'its stream ended early'}")
        return done.stdout

    def header(self):
        """The header and the schema archive; the data archive is what is left to read."""
        prefix = self._read(PREFIX_BYTES)
        if not prefix.startswith(PREFIX[:21]):
            raise EngineFailed("the backup's stream does not start with its header")
        header = json.loads(self._read(int(prefix[21:])))
        return header, self._read(header["schema_bytes"])

    def finish(self):
        """What restic said if it failed. restic killed by the closed pipe, once pg_restore had read all it
        needed, did not fail."""
        self.pipe.close()
        errors = self.restic.communicate()[1]
        if self.restic.returncode in (0, -signal.SIGPIPE):
            return ""
        return _said(errors) or f"restic dump exited with {self.restic.returncode}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pipe.close()
        _stop(self.restic)


class _Script:
    """psql reading, in one transaction, the SQL that pg_restore makes of each archive in turn. This process
    keeps psql's input open until every archive was read whole: psql commits only then, and is killed
    otherwise."""

    def __init__(self, database_url, into):
        self.pipe = _Pipe()
        try:
            self.psql = subprocess.Popen(PSQL, env=libpq_environment(database_url, into), stdin=self.pipe.read,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            self.pipe.close("read")

    def add(self, archive, *options):
        """``archive``: bytes, or a _Stream whose data archive is what is left to read."""
        stream = not isinstance(archive, bytes)
        restore = subprocess.Popen(["pg_restore", "--file=-", *options], stdin=archive.pipe.read if stream else subprocess.PIPE,
                                   stdout=self.pipe.write, stderr=subprocess.PIPE)
        try:
            errors = restore.communicate(None if stream else archive)[1]
        finally:
            _stop(restore)
        unreadable = archive.finish() if stream else ""
        if restore.returncode and not unreadable:
            try:
                self.psql.wait(timeout=10)  # psql stops at its first error: pg_restore then met the closed pipe
            except subprocess.TimeoutExpired:
                pass
        if self.psql.returncode:
            raise EngineFailed(f"psql failed: {_said(self.psql.communicate()[1])}")
        if unreadable:
            raise EngineFailed(f"restic could not read the backup: {unreadable}")
        if restore.returncode:
            raise EngineFailed(f"pg_restore failed: {_said(errors)}")

    def commit(self):
        self.pipe.close()
        errors = self.psql.communicate()[1]
        if self.psql.returncode:
            raise EngineFailed(f"psql failed: {_said(errors)}")
        return errors.decode(errors="replace")

    def abandon(self):
        if self.pipe.write is not None:
            _stop(self.psql)  # before its input ends: nothing is committed
            self.pipe.close()


def restore(repository, snapshot_id, database_url, into, parts=True):
    """The backup in ``snapshot_id`` into the database ``into``, in one transaction (``parts`` False: a backup
    from before parts, one archive); returns what psql said."""
    script = _Script(database_url, into)
    try:
        if not parts:
            with _Stream(repository, snapshot_id, STDIN_FILENAME) as whole:
                script.add(whole)
            return script.commit()
        with _Stream(repository, snapshot_id, PARTS_FILENAME) as own:
            header, schema = own.header()
            script.add(schema, "--section=pre-data")
            script.add(own, "--data-only")
        for earlier, tables in header["reused"].items():
            with _Stream(repository, earlier, PARTS_FILENAME) as stream:
                passes = reuse.selections(tables, stream.header()[0]["data"])  # by what else it holds
                script.add(stream, "--data-only", *passes[0])
            for options in passes[1:]:  # the same stream again, for another schema's tables
                with _Stream(repository, earlier, PARTS_FILENAME) as stream:
                    stream.header()
                    script.add(stream, "--data-only", *options)
        script.add(schema, "--section=post-data")
        return script.commit()
    finally:
        script.abandon()


def _said(stderr):
    return stderr.decode(errors="replace").strip()[-2000:]


def _stop(process):
    """Kill ``process`` unless it ended; reap it."""
    if process.poll() is None:
        process.kill()
        process.wait()


def _on_server(database_url, statement, name):
    if not SCRATCH_NAME.match(name):
        raise ValueError(f"{name!r} is not a plain database name")
    engine = _server(database_url)
    try:
        with engine.connect() as connection:
            connection.execute(text(statement.format(name=name)))
    except DBAPIError as exc:
        raise EngineFailed(_denied(exc)) from exc
    finally:
        engine.dispose()


def create_scratch(database_url, name):
    _on_server(database_url, 'CREATE DATABASE "{name}"', name)


def drop_scratch(database_url, name):
    _on_server(database_url, 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', name)


def revisions(database_url, database):
    """{schema: alembic revision} in ``database``: each service's migrations keep their version in its schema."""
    engine = create_engine(make_url(database_url).set(database=database))
    try:
        with engine.connect() as connection:
            schemas = connection.execute(text("SELECT table_schema FROM information_schema.tables "
                                              "WHERE table_name = 'alembic_version'")).scalars().all()
            return {s: connection.execute(text(f'SELECT version_num FROM "{s}".alembic_version')).scalar()
                    for s in schemas}
    finally:
        engine.dispose()


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


def _server(database_url):
    """An AUTOCOMMIT engine on the maintenance database: CREATE, RENAME and DROP DATABASE run outside any other."""
    return create_engine(make_url(database_url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def settle(database_url, database):
    """Mark the events that ``database``'s outboxes had not sent when it was backed up as sent: the database they
    were written in sent them after the backup, and their ids are past the consumers' memory (outbox.py)."""
    engine = create_engine(make_url(database_url).set(database=database))
    try:
        with engine.begin() as connection:
            tables = connection.execute(text("SELECT table_schema FROM information_schema.tables "
                                             "WHERE table_name = 'outbox'")).scalars().all()
            return sum(connection.execute(text(f'UPDATE "{schema}".outbox SET sent_at = now() WHERE sent_at IS NULL'))
                       .rowcount for schema in tables)
    finally:
        engine.dispose()


def swap(database_url, scratch, replaced, attempts=50):
    """Put ``scratch`` in the place of the live database (the one ``database_url`` names): connections to the live
    one off, its sessions ended, renamed ``replaced`` (kept, connections still off), ``scratch`` renamed to the live
    name. Services reconnect by name to the new one. Any step that fails is undone, and raises with the reason."""
    live = make_url(database_url).database
    for name in (live, scratch, replaced):
        if not SCRATCH_NAME.match(name):
            raise ValueError(f"{name!r} is not a plain database name")
    engine, done = _server(database_url), []
    try:
        with engine.connect() as connection:
            def run(statement):
                connection.execute(text(statement))

            try:
                run(f'ALTER DATABASE "{live}" ALLOW_CONNECTIONS false')
                done.append(f'ALTER DATABASE "{live}" ALLOW_CONNECTIONS true')
                _rename_when_alone(connection, live, replaced, attempts)
                done.append(f'ALTER DATABASE "{replaced}" RENAME TO "{live}"')
                _rename_when_alone(connection, scratch, live, attempts)  # a migration's pool may linger there
            except DBAPIError as exc:
                connection.rollback()  # the failed statement's (autocommit: nothing to undo but the state)
                for undo in reversed(done):
                    run(undo)
                raise EngineFailed(f"swapping in the restored database {scratch} failed, the live database {live} "
                                   f"is back as it was: {_denied(exc)}") from exc
    finally:
        engine.dispose()


def _rename_when_alone(connection, name, new_name, attempts):
    """RENAME waits for no session: end the database's and try again until the last one is gone."""
    for attempt in range(attempts):
        connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
        try:
            connection.execute(text(f'ALTER DATABASE "{name}" RENAME TO "{new_name}"'))
            return
        except DBAPIError as exc:
            if getattr(exc.orig, "pgcode", None) != "55006" or attempt == attempts - 1:  # object_in_use
                raise
            connection.rollback()
            time.sleep(0.1)


def _denied(exc):
    said = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    if getattr(exc.orig, "pgcode", None) == "42501":  # insufficient_privilege
        said += (" (the database user must own the live database and have CREATEDB: "
                 "ALTER DATABASE ... OWNER TO ...; ALTER ROLE ... CREATEDB)")
    return said
