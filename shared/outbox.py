"""The transactional outbox: an event is a row written in the same transaction as the
change it reports, and a relay publishes it after the commit.

Each emitting service has an ``outbox`` table in its own schema (``outbox_table``, created
by its own migration with ``migration``). Its
``EventEmitter`` (shared/events.py) writes there (``Outbox.write``): the event leaves only
if the change commits, and a process that dies after the commit leaves the row behind for
the relay. The relay (``Relay``; one per process that emits, so one per service replica)
claims unsent rows with ``FOR UPDATE SKIP LOCKED``, so replicas share the rows without
waiting on each other, publishes each with publisher confirms, marks them sent in the same
transaction and later prunes sent rows. A relay killed between the broker's confirm and its
commit publishes those rows again: delivery is at least once, and every event carries its
``id`` (a UUID made when it is built) and its producer's ``sequence`` (the row's serial) so
consumers can drop a repeat.

Consumers drop repeats by id in a ``processed_events`` table of their own schema
(``processed_events_table``, ``first_delivery``), in the handler's own transaction, and
forget ids after ``PROCESSED_RETENTION`` (the relay republishes within seconds, so an hour
is ample).
"""
import logging
import os
import threading
import time
from datetime import timedelta

from sqlalchemy import BigInteger, Column, DateTime, Index, MetaData, String, Table, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert

from shared.db import NAMING_CONVENTION

log = logging.getLogger("steward.outbox")

SENT_RETENTION = timedelta(hours=1)  # sent rows are kept this long, for an operator to look at
PROCESSED_RETENTION = timedelta(hours=1)  # how long a consumer remembers the ids it handled
POLL_SECONDS = 1.0  # how often a relay looks for rows nobody told it of (another process's, a dead one's)
BATCH = 200
# A test hook: the process dies right after a transaction that wrote events commits, before any is published.
EXIT_AFTER_COMMIT = "STEWARD_TEST_EXIT_AFTER_OUTBOX_COMMIT"


def outbox_table(metadata):
    """The outbox in ``metadata``'s schema (a service's models; its migration creates it the same way)."""
    return Table(
        "outbox", metadata,
        Column("sequence", BigInteger, primary_key=True, autoincrement=True),  # the producer's sequence
        Column("id", String(32), nullable=False, unique=True),  # the event's id, in its body too
        Column("event", String(64), nullable=False),
        Column("body", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("sent_at", DateTime(timezone=True)),
        Index("ix_outbox_unsent", "sequence", postgresql_where=text("sent_at IS NULL")),
    )


def processed_events_table(metadata):
    """The ids of the events a consuming service handled, forgotten after PROCESSED_RETENTION."""
    return Table(
        "processed_events", metadata,
        Column("id", String(32), primary_key=True),
        Column("event", String(64), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now(), index=True),
    )


def migration(schema, *tables):
    """(upgrade, downgrade) of a service's migration that adds ``tables`` (outbox_table, processed_events_table)
    to ``schema`` as its models define them."""
    from alembic import op

    def upgrade():
        metadata = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
        for make in tables:
            make(metadata).create(op.get_bind())

    def downgrade():
        metadata = MetaData(schema=schema, naming_convention=NAMING_CONVENTION)
        for make in reversed(tables):
            make(metadata).drop(op.get_bind())

    return upgrade, downgrade


def table_of(metadata, name):
    """``metadata``'s table ``name`` (in its schema), or None."""
    return metadata.tables.get(f"{metadata.schema}.{name}")


def first_delivery(connection, table, name, payload):
    """True the first time this event's id is handled in ``connection``'s transaction, False for a repeat.

    The row commits (or rolls back) with the handler's own writes; a repeat arriving while the first
    is still being handled waits for that transaction on the primary key, then sees it.
    """
    if not payload.get("id"):  # emitted before the outbox: nothing to tell a repeat by
        return True
    inserted = connection.execute(insert(table).values(id=payload["id"], event=name)
                                  .on_conflict_do_nothing().returning(table.c.id)).scalar()
    if inserted is None:
        log.info("dropped a repeated %s event (id %s)", name, payload["id"], extra={"event_id": payload["id"]})
        return False
    return True


def forget_processed(connection, table, older_than=PROCESSED_RETENTION):
    return connection.execute(table.delete().where(table.c.processed_at < func.now() - older_than)).rowcount


class Relay:
    """Publishes one service's outbox: ``write`` puts an event in a transaction, ``kick`` after
    its commit, ``run`` in a thread (or green thread) of its own until ``stop``."""

    def __init__(self, engine, table, publish, processed=None, poll_seconds=POLL_SECONDS, batch=BATCH):
        self.engine = engine
        self.table = table
        self.processed = processed  # the service's processed_events, pruned with the sent rows
        self.publish = publish  # publish(name, body), returning once the broker confirmed it
        self.poll_seconds = poll_seconds
        self.batch = batch
        self._wake = threading.Event()
        self._stopping = False
        self._pruned_at = None

    def write(self, connection, name, body):
        """Put the event in ``connection``'s (or a session's) transaction; it is published after the commit."""
        connection.execute(insert(self.table).values(id=body["id"], event=name, body=body))

    def kick(self):
        """A transaction that wrote events committed: publish them now rather than at the next poll."""
        if os.environ.get(EXIT_AFTER_COMMIT):
            os._exit(70)
        self._wake.set()

    def relay_once(self):
        """Publish up to ``batch`` unsent events, oldest first; returns how many."""
        if os.environ.get(EXIT_AFTER_COMMIT):  # the process is to die before it publishes anything
            return 0
        table = self.table
        with self.engine.begin() as connection:
            rows = connection.execute(
                select(table.c.sequence, table.c.event, table.c.body).where(table.c.sent_at.is_(None))
                .order_by(table.c.sequence).limit(self.batch).with_for_update(skip_locked=True)).all()
            for row in rows:
                self.publish(row.event, dict(row.body, sequence=row.sequence))
            if rows:
                connection.execute(update(table).where(table.c.sequence.in_([r.sequence for r in rows]))
                                   .values(sent_at=func.now()))
        return len(rows)

    def prune(self, older_than=SENT_RETENTION):
        """Forget sent rows, and the processed ids, past their retention; returns how many sent rows went."""
        with self.engine.begin() as connection:
            if self.processed is not None:
                forget_processed(connection, self.processed)
            return connection.execute(self.table.delete().where(
                self.table.c.sent_at < func.now() - older_than)).rowcount

    def run(self):
        while True:
            stopping = self._stopping  # asked to stop: one last pass for what the last commits wrote
            try:
                while self.relay_once() == self.batch:
                    pass
                self._prune_now_and_then()
            except Exception as exc:  # the broker or the database is away: the rows wait, and so do we
                log.warning("events not relayed yet; trying again", extra={"error": repr(exc)[:300]})
            if stopping:
                return
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _prune_now_and_then(self):
        if self._pruned_at is None or time.monotonic() - self._pruned_at > 60:
            self._pruned_at = time.monotonic()
            self.prune()

    def stop(self):
        self._stopping = True
        self._wake.set()
