"""``python -m services.monitoring_ingest.consumer``: agent traffic into PostgreSQL in batches.

Not a nameko worker per message: one process consumes the durable queues
``monitoring.stats`` and ``monitoring.heartbeats`` with a prefetch window,
takes up to ``batch_size`` messages or waits ``batch_ms``, writes them with
one statement per table, commits, then acknowledges the whole batch at once
(``basic_ack(multiple=True)``). A malformed message is dead-lettered to
``monitoring.dead`` and counted; a crash before the commit leaves the batch
unacknowledged, so RabbitMQ redelivers it and the idempotent writes store it
once. Run as many replicas as needed (competing consumers).
"""
import argparse
import json
import logging
import signal
import sys
import time
from datetime import datetime, timezone

import pika
from sqlalchemy.exc import DBAPIError, OperationalError

from services.monitoring_ingest import partitions
from services.monitoring_ingest.ingest import BatchWriter, MalformedMessage, Outcome, parse
from services.monitoring_ingest.liveness import disk_low_payload, state_up_payload
from services.monitoring_ingest.topology import EventPublisher, declare_agent_topology
from shared.config import load_settings
from shared.db import make_engine
from shared.logs import configure_logging
from shared.schemas.agent import HEARTBEAT_QUEUE, STATS_QUEUE

log = logging.getLogger("monitoring_ingest.consumer")
CONNECTION_NAME = "monitoring_ingest.consumer"  # how operators (and the tests) find it in rabbitmqctl


class Counters(dict):
    def add(self, name, count=1):
        self[name] = self.get(name, 0) + count


class BatchConsumer:
    def __init__(self, amqp_uri, engine, batch_size=2000, batch_ms=250, prefetch=None, writer=None, ack_only=False,
                 clock=lambda: datetime.now(timezone.utc)):
        self.amqp_uri = amqp_uri
        self.engine = engine
        self.batch_size = batch_size
        self.batch_seconds = batch_ms / 1000.0
        self.prefetch = prefetch or batch_size * 2
        self.writer = writer or BatchWriter()
        self.ack_only = ack_only  # the benchmark's baseline: acknowledge and store nothing
        self.clock = clock
        self.counters = Counters()
        self.known_partitions = set()
        self._pending = []  # (delivery_tag, body)
        self._first_at = None
        self._stopping = False

    # -- AMQP ----------------------------------------------------------------
    def _connect(self):
        parameters = pika.URLParameters(self.amqp_uri)
        parameters.heartbeat = 60
        parameters.client_properties = {"connection_name": CONNECTION_NAME}
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        declare_agent_topology(self.channel)
        self.channel.basic_qos(prefetch_count=self.prefetch)
        for queue in (STATS_QUEUE, HEARTBEAT_QUEUE):
            self.channel.basic_consume(queue, self._on_message)
        self.events = EventPublisher(self.connection)

    def _on_message(self, channel, method, properties, body):
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append((method.delivery_tag, body))

    def stop(self, *args):
        self._stopping = True

    def run(self):
        while not self._stopping:
            try:
                self._connect()
                log.info("consuming", extra={"queues": [STATS_QUEUE, HEARTBEAT_QUEUE], "batch_size": self.batch_size})
                self._loop()
            except pika.exceptions.AMQPError as exc:
                # Unacknowledged messages go back to the queue; the writes are idempotent.
                self._pending = []
                if self._stopping:
                    break
                log.warning("broker connection lost; reconnecting", extra={"error": repr(exc)})
                time.sleep(1)
        try:
            if self._pending:
                self.flush()
            self.connection.close()
        except Exception:
            pass
        log.info("stopped", extra=dict(self.counters))

    def _loop(self):
        while not self._stopping:
            wait = self.batch_seconds
            if self._pending:
                wait = max(0.0, self._first_at + self.batch_seconds - time.monotonic())
            self.connection.process_data_events(time_limit=wait)
            if self._pending and (len(self._pending) >= self.batch_size
                                  or time.monotonic() - self._first_at >= self.batch_seconds):
                self.flush()

    # -- a batch -------------------------------------------------------------
    def flush(self):
        batch, self._pending = self._pending, []
        if self.ack_only:
            self.channel.basic_ack(batch[-1][0], multiple=True)
            self.counters.add("acknowledged", len(batch))
            return
        now = self.clock()
        tags, messages = [], []
        for tag, body in batch:
            try:
                messages.append(parse(body, now))
                tags.append(tag)
            except MalformedMessage as exc:
                self.reject(tag, str(exc))
        outcome, refused = self.store(messages, tags)
        stored = [tag for tag in tags if tag not in refused]
        if stored:
            # Rejected tags are settled already; multiple=True acknowledges the rest in one frame.
            self.channel.basic_ack(stored[-1], multiple=True)
        self.counters.add("stored", len(stored))
        self.emit(outcome)

    def reject(self, tag, reason):
        self.counters.add("malformed")
        log.warning("agent message dead-lettered", extra={"reason": reason})
        self.channel.basic_nack(tag, multiple=False, requeue=False)

    def store(self, messages, tags):
        """Write the batch; returns (Outcome, tags refused and dead-lettered)."""
        if not messages:
            return Outcome(), set()
        try:
            return self._write(messages), set()
        except DBAPIError as exc:
            if len(messages) == 1:
                self.reject(tags[0], f"the database refused it: {str(exc.orig)[:200]}")
                return Outcome(), {tags[0]}
            log.warning("batch refused; writing its messages one by one", extra={"error": str(exc.orig)[:200]})
        # One message the database refuses must not hold back the others.
        merged, refused = Outcome(), set()
        for tag, message in zip(tags, messages):
            outcome, bad = self.store([message], [tag])
            merged.state_changes += outcome.state_changes
            merged.disks_low += outcome.disks_low
            refused |= bad
        return merged, refused

    def _write(self, messages):
        delay = 0.2
        while True:
            try:
                self._ensure_partitions(messages)
                with self.engine.begin() as connection:
                    return self.writer.write(connection, messages)
            except DBAPIError as exc:
                # The database is down, a deadlock was broken, or retention dropped a partition we
                # thought was there: the same batch again (still unacknowledged) after a pause.
                transient = isinstance(exc, OperationalError) or "no partition of relation" in str(exc.orig)
                if not transient or self._stopping:
                    raise
                self.known_partitions.clear()
                log.warning("batch write failed; retrying", extra={"error": str(exc.orig)[:200]})
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _ensure_partitions(self, messages):
        moments = {m["collected_at"] for m in messages}
        with self.engine.begin() as connection:
            partitions.ensure_covering(connection, moments, self.known_partitions)

    def emit(self, outcome):
        for server_id, name, previous, last_heartbeat_at in outcome.state_changes:
            self.events.publish("server_state_changed", state_up_payload(server_id, name, previous, last_heartbeat_at))
        for server_id, name, mount, free in outcome.disks_low:
            self.events.publish("disk_low", disk_low_payload(server_id, name, mount, free))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Consume agent traffic into the monitoring schema in batches")
    parser.add_argument("--config")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--batch-ms", type=int)
    parser.add_argument("--ack-only", action="store_true", help="acknowledge without storing (benchmark baseline)")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    configure_logging("monitoring_ingest.consumer", settings.get("LOG_LEVEL", "INFO"))
    options = settings.section("monitoring_ingest")
    engine = make_engine(settings.database_url, pool_size=2, connect_args={"options": "-c timezone=UTC"})
    consumer = BatchConsumer(
        settings.amqp_uri,
        engine,
        batch_size=args.batch_size or int(options.get("batch_size", 2000)),
        batch_ms=args.batch_ms or int(options.get("batch_ms", 250)),
        writer=BatchWriter(float(options.get("disk_low_free_percent", 10))),
        ack_only=args.ack_only,
    )
    signal.signal(signal.SIGTERM, consumer.stop)
    signal.signal(signal.SIGINT, consumer.stop)
    consumer.run()
    print(json.dumps(consumer.counters), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
