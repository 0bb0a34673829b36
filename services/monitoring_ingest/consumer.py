"""``python -m services.monitoring_ingest.consumer``: agent traffic into PostgreSQL in batches.

Not a nameko worker per message: one process consumes the durable queues
``monitoring.stats`` and ``monitoring.heartbeats`` with a prefetch window,
takes up to ``batch_size`` messages or waits ``batch_ms``, writes them with
one statement per table, commits, then acknowledges the whole batch at once
(``basic_ack(multiple=True)``). A malformed message is dead-lettered to
``monitoring.dead`` and counted; a crash before the commit leaves the batch
unacknowledged, so RabbitMQ redelivers it and the idempotent writes store it
once. Run as many replicas as needed (competing consumers).

Who sent a message decides whose data it is: its body must speak for the
server of its routing key, and its ``user_id`` (which RabbitMQ checks against
the publishing connection's user) must be that server's own broker user or the
control plane's (ingest.Senders). Anything else is dead-lettered with the
reason in the header ``x-steward-reason``.

Two threads share the work so that the database and Python run side by side:
the AMQP thread receives and parses batch N+1 while a writer thread commits
batch N. Only the AMQP thread touches the channel: the writer hands each
outcome back with ``add_callback_threadsafe`` and the AMQP thread then
acknowledges and dead-letters, in the order the batches were written.
Events (a server back up, a disk low, versions reported) are written into
monitoring's outbox in the batch's own transaction (shared/outbox.py), and a
relay thread publishes them after the commit: a consumer that dies, or whose
connection drops, between the commit and the acknowledgement gets the batch
again, stores nothing new, and the events it committed still go out, once.
"""
import argparse
import functools
import gc
import json
import logging
import queue
import signal
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import pika
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from services.monitoring_ingest import partitions
from services.monitoring_ingest.exceptions import MalformedMessage
from services.monitoring_ingest.ingest import BatchWriter, Outcome, Senders, parse
from services.monitoring_ingest.liveness import (disk_low_payload, report_ingest, state_up_payload,
                                                 versions_reported_payload)
from services.monitoring_ingest.topology import (
    DEAD_LETTER_EXCHANGE, REASON_HEADER, SENDER_HEADER, declare_agent_topology,
)
from services.monitoring_ingest.models import outbox
from shared.config import load_settings
from shared.db import make_engine
from shared.events import EventEmitter
from shared.logs import configure_logging
from shared.outbox import Relay
from shared.publisher import event_publisher
from shared.schemas.agent import HEARTBEAT_QUEUE, MAX_HEARTBEAT_BYTES, MAX_STATS_BYTES, STATS_QUEUE

log = logging.getLogger("monitoring_ingest.consumer")
CONNECTION_NAME = "monitoring_ingest.consumer"  # how operators (and the tests) find it in rabbitmqctl
SERVICE = "monitoring_ingest"  # whose events it emits
REPORT_SECONDS = 0.25  # how often the writer tells liveness that ingest listens (ingest_status)
# A quiet wait that lasted this long was no wait: the process was stopped or starved of CPU (see _write_batches).
STALL_SECONDS = 4 * REPORT_SECONDS


class _Interrupted(Exception):
    """The consumer is stopping while the database is unreachable."""


class Counters(dict):
    def add(self, name, count=1):
        self[name] = self.get(name, 0) + count


class BatchConsumer:
    def __init__(self, amqp_uri, engine, batch_size=5000, batch_ms=250, prefetch=None, writer=None, ack_only=False,
                 stop_after=None, clock=lambda: datetime.now(timezone.utc), publish=None):
        self.amqp_uri = amqp_uri
        self.engine = engine
        parameters = pika.URLParameters(amqp_uri)
        # The control plane's own broker user relays heartbeats (gateway) and pulled statistics (poller).
        self.senders = Senders(parameters.virtual_host, [parameters.credentials.username])
        self.relay = Relay(engine, outbox, publish or event_publisher({"AMQP_URI": amqp_uri}, SERVICE))
        self.batch_size = batch_size
        self.batch_seconds = batch_ms / 1000.0
        # One batch being written, one waiting for the writer, one filling.
        self.prefetch = prefetch or batch_size * 3
        self.writer = writer or BatchWriter()
        self.ack_only = ack_only  # the benchmark's baseline: acknowledge and store nothing
        self.stop_after = stop_after  # for benchmarks: stop once this many messages are settled
        self.clock = clock
        self.counters = Counters()
        self.known_partitions = set()
        self._pending = []  # (delivery_tag, routing_key, user_id, body)
        self._first_at = None
        self._stopping = False
        self._writes = queue.Queue(maxsize=1)
        self._generation = 0  # which connection a delivery tag belongs to
        self._redeliver = False
        self._consuming = False  # the AMQP side is connected and consuming
        self._reported = (None, None, 0.0)  # (generation, caught_up, monotonic time) of the last report

    # -- AMQP ----------------------------------------------------------------
    def _connect(self):
        parameters = pika.URLParameters(self.amqp_uri)
        parameters.heartbeat = 60
        parameters.client_properties = {"connection_name": CONNECTION_NAME}
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        declare_agent_topology(self.channel)
        self.channel.basic_qos(prefetch_count=self.prefetch)
        for name in (STATS_QUEUE, HEARTBEAT_QUEUE):
            self.channel.basic_consume(name, self._on_message)
        self._generation += 1
        self._consuming = True

    def _on_message(self, channel, method, properties, body):
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append((method.delivery_tag, method.routing_key, properties.user_id, body))

    def stop(self, *args):
        self._stopping = True
        connection = getattr(self, "connection", None)
        if connection is not None and connection.is_open:
            # Wake process_data_events now (it would wait out the batch window): the batch is flushed at once.
            connection.add_callback_threadsafe(lambda: None)

    def run(self):
        writer = threading.Thread(target=self._write_batches, name="batch-writer", daemon=True)
        writer.start()
        relay = threading.Thread(target=self.relay.run, name="outbox-relay", daemon=True)
        relay.start()
        while not self._stopping:
            try:
                self._connect()
                log.info("consuming", extra={"queues": [STATS_QUEUE, HEARTBEAT_QUEUE], "batch_size": self.batch_size})
                self._loop()
            except pika.exceptions.AMQPError as exc:
                # Unacknowledged messages go back to the queue; the writes are idempotent.
                self._consuming = False
                self._pending = []
                if self._stopping:
                    break
                log.warning("broker connection lost; reconnecting", extra={"error": repr(exc)})
                time.sleep(1)
        try:
            if self._pending:
                self.flush()
            self._writes.put(None)
            writer.join(timeout=60)
            self.connection.process_data_events(time_limit=0)  # the last batches' acknowledgements
            self.connection.close()
        except Exception:
            pass
        self.relay.stop()
        relay.join(timeout=10)  # what the last batches emitted goes out now, or after the next start
        log.info("stopped", extra=dict(self.counters))

    def _loop(self):
        while not self._stopping:
            wait = self.batch_seconds
            if self._pending:
                wait = max(0.0, self._first_at + self.batch_seconds - time.monotonic())
            self.connection.process_data_events(time_limit=wait)
            if self._redeliver:
                self._redeliver = False
                self.connection.close()  # everything unacknowledged goes back to the queue
                raise pika.exceptions.AMQPConnectionError("connection dropped so that a batch is delivered again")
            if self._pending and (len(self._pending) >= self.batch_size
                                  or time.monotonic() - self._first_at >= self.batch_seconds):
                self.flush()

    # -- a batch -------------------------------------------------------------
    def flush(self):
        """On the AMQP thread: parse the batch, dead-letter what is malformed, queue the rest for the writer."""
        batch, self._pending = self._pending, []
        if self.ack_only:
            self.channel.basic_ack(batch[-1][0], multiple=True)
            self.counters.add("acknowledged", len(batch))
            self._count_towards_stop()
            return
        now = self.clock()
        deliveries, messages = [], []
        for delivery in batch:
            _, key, user_id, body = delivery
            try:
                limit = MAX_HEARTBEAT_BYTES if key.startswith("heartbeat.") else MAX_STATS_BYTES
                if len(body) > limit:
                    raise MalformedMessage(f"{len(body)} bytes: more than the {limit} a message may have")
                message = parse(body, now)
                self.senders.check(message, key, user_id)
            except MalformedMessage as exc:
                self.reject(delivery, str(exc))
                continue
            messages.append(message)
            deliveries.append(delivery)
        if messages:
            # Blocks while the writer is one batch behind: the prefetch window then stops the broker.
            self._writes.put((self.connection, self._generation, messages, deliveries))

    def _write_batches(self):
        """The writer thread: store each batch, then hand its settlement back to the AMQP thread."""
        while True:
            waiting_since = time.monotonic()
            try:
                item = self._writes.get(timeout=REPORT_SECONDS)
            except queue.Empty:
                # Nothing to write: the queues are drained, unless this thread woke long after it asked to. Then
                # the process was stopped or starved, what the broker sent meanwhile may not have reached this
                # queue yet, and saying "caught up" now would make every server look silent: it says "behind",
                # and the next quiet wait starts a new listening period (liveness.report_ingest). Nor is it
                # caught up while a batch is filling (_pending, read from the AMQP thread): that batch's store
                # reports.
                if time.monotonic() - waiting_since >= STALL_SECONDS:
                    self._report(caught_up=False)
                elif not self._pending:
                    self._report(caught_up=True)
                continue
            if item is None:
                return
            connection, generation, messages, deliveries = item
            try:
                outcome, refused = self.store(messages, [d[0] for d in deliveries])
                self._report(caught_up=len(messages) < self.batch_size)  # a full batch: a backlog is draining
                settle = functools.partial(self._settle, generation, deliveries, outcome, refused)
            except _Interrupted:
                log.info("stopping with the database away: the batch stays on the queue")
                settle = functools.partial(self._abandon, generation)
            except Exception:
                # Not transient and not one message's fault. A later batch's multiple=True
                # acknowledgement would cover these tags, so drop the connection instead:
                # everything unacknowledged goes back to the queue.
                log.exception("batch not stored; reconnecting so that it is delivered again")
                settle = functools.partial(self._abandon, generation)
            try:
                connection.add_callback_threadsafe(settle)
            except pika.exceptions.AMQPError:
                pass  # that connection is gone: RabbitMQ redelivers the batch, and storing it again changes nothing

    def _report(self, caught_up):
        """Tell liveness whether ingest is listening (liveness.report_ingest); a report that repeats the last
        goes at most every REPORT_SECONDS."""
        if not self._consuming or self.ack_only:
            return
        generation, last_caught_up, last_at = self._reported
        fresh = generation != self._generation
        if not fresh and caught_up == last_caught_up and time.monotonic() - last_at < REPORT_SECONDS:
            return
        try:
            with self.engine.begin() as connection:
                report_ingest(connection, self.clock(), caught_up, fresh)
            self._reported = (self._generation, caught_up, time.monotonic())
        except DBAPIError as exc:  # the database is away: the batches say so already
            log.debug("ingest status not reported", extra={"error": str(exc.orig)[:200]})

    def _abandon(self, generation):
        if generation == self._generation:
            self._redeliver = True  # _loop drops the connection

    def _settle(self, generation, deliveries, outcome, refused):
        if generation != self._generation:
            return  # delivery tags of a closed channel
        stored = []
        for delivery in deliveries:
            if delivery[0] in refused:
                self.reject(delivery, refused[delivery[0]])
            else:
                stored.append(delivery[0])
        if stored:
            # Rejected tags are settled already; multiple=True acknowledges the rest in one frame.
            self.channel.basic_ack(stored[-1], multiple=True)
        self.counters.add("stored", len(stored))
        self._count_towards_stop()

    def _count_towards_stop(self):
        settled = sum(self.counters.get(k, 0) for k in ("acknowledged", "stored", "malformed"))
        if self.stop_after and settled >= self.stop_after:
            self._stopping = True

    def reject(self, delivery, reason):
        """Dead-letter one delivery with the reason: a copy to the dead-letter exchange, then (on the
        same channel, so in that order) the acknowledgement."""
        tag, key, user_id, body = delivery
        self.counters.add("malformed")
        log.warning("agent message dead-lettered", extra={"reason": reason, "routing_key": key, "user_id": user_id})
        # The original user_id cannot travel as ours (RabbitMQ would refuse it): it goes as a header.
        headers = {REASON_HEADER: reason[:1000], SENDER_HEADER: user_id or ""}
        # message_id names it for `steward dead-letters show|retry|drop`; timestamp says when it was refused.
        self.channel.basic_publish(DEAD_LETTER_EXCHANGE, key, body, pika.BasicProperties(
            content_type="application/json", delivery_mode=2, headers=headers, message_id=uuid.uuid4().hex,
            timestamp=int(time.time())))
        self.channel.basic_ack(tag)

    def store(self, messages, tags):
        """Write the batch; returns (Outcome, {tag: why} of the messages the database refused)."""
        if not messages:
            return Outcome(), {}
        try:
            return self._write(messages), {}
        except DBAPIError as exc:
            if len(messages) == 1:
                return Outcome(), {tags[0]: f"the database refused it: {str(exc.orig)[:200]}"}
            log.warning("batch refused; writing its messages one by one", extra={"error": str(exc.orig)[:200]})
        # One message the database refuses must not hold back the others.
        merged, refused = Outcome(), {}
        for tag, message in zip(tags, messages):
            outcome, bad = self.store([message], [tag])
            merged.state_changes += outcome.state_changes
            merged.disks_low += outcome.disks_low
            merged.versions_reported += outcome.versions_reported
            refused.update(bad)
        return merged, refused

    def _write(self, messages):
        delay = 0.2
        while True:
            try:
                self._ensure_partitions(messages)
                with self.engine.begin() as connection:
                    outcome = self.writer.write(connection, messages)
                    self._emit(connection, outcome)
                self.relay.kick()
                return outcome
            except DBAPIError as exc:
                # The database is down, a deadlock was broken, or retention dropped a partition we
                # thought was there: the same batch again (still unacknowledged) after a pause.
                transient = isinstance(exc, OperationalError) or "no partition of relation" in str(exc.orig)
                if not transient:
                    raise
                if self._stopping:  # not the messages' fault: they must not be dead-lettered
                    raise _Interrupted() from exc
                self.known_partitions.clear()
                log.warning("batch write failed; retrying", extra={"error": str(exc.orig)[:200]})
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _ensure_partitions(self, messages):
        moments = {m["collected_at"] for m in messages}
        if partitions.missing(moments, self.known_partitions):  # once an hour, or for a late batch
            with self.engine.begin() as connection:
                partitions.ensure_covering(connection, moments, self.known_partitions)

    def _emit(self, connection, outcome):
        """Into the outbox, in the batch's transaction: the events commit with what caused them."""
        events = EventEmitter(SERVICE, functools.partial(self.relay.write, connection))
        payloads = [("server_state_changed", state_up_payload(server_id, name, previous, last_heartbeat_at))
                    for server_id, name, previous, last_heartbeat_at in outcome.state_changes]
        payloads += [("disk_low", disk_low_payload(server_id, name, mount, free))
                     for server_id, name, mount, free in outcome.disks_low]
        payloads += [("server_versions_reported", versions_reported_payload(server_id, name, versions))
                     for server_id, name, versions in outcome.versions_reported]
        for name, payload in payloads:
            try:
                events.emit(name, **payload)
            except ValidationError:  # a bug of ours: the batch must not be redelivered for ever because of it
                log.exception("event not emitted", extra={"event": name, "server_id": payload["server_id"]})


def main(argv=None):
    parser = argparse.ArgumentParser(description="Consume agent traffic into the monitoring schema in batches")
    parser.add_argument("--config")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--batch-ms", type=int)
    parser.add_argument("--ack-only", action="store_true", help="acknowledge without storing (benchmark baseline)")
    parser.add_argument("--stop-after", type=int, help="stop once this many messages are settled (benchmarks)")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    configure_logging(settings, "monitoring_ingest.consumer")
    options = settings.section("monitoring_ingest")
    engine = make_engine(settings.database_url, pool_size=2, connect_args={"options": "-c timezone=UTC"})
    consumer = BatchConsumer(
        settings.amqp_uri,
        engine,
        batch_size=args.batch_size or int(options.get("batch_size", 5000)),
        batch_ms=args.batch_ms or int(options.get("batch_ms", 250)),
        writer=BatchWriter(float(options.get("disk_low_free_percent", 10))),
        ack_only=args.ack_only,
        stop_after=args.stop_after,
        publish=event_publisher(settings, SERVICE),
    )
    # A batch allocates some hundred thousand short-lived dicts and none of them form cycles:
    # at the default threshold (700) the collector ran every few messages, ~20 % of the parsing CPU.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    signal.signal(signal.SIGTERM, consumer.stop)
    signal.signal(signal.SIGINT, consumer.stop)
    consumer.run()
    print(json.dumps(consumer.counters), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
