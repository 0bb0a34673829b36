"""What the monitoring tests share besides fixtures: agent messages and waiting."""
import contextlib
import functools
import json
import os
import uuid
from datetime import datetime, timedelta, timezone

import pika
from kombu import Connection, Exchange
from sqlalchemy.engine import make_url

from services.monitoring_ingest.topology import DEAD_LETTER_EXCHANGE, REASON_HEADER, SENDER_HEADER, declare_agent_topology
from shared.schemas.agent import EXCHANGE, routing_key, stats_routing_key
from tests import waiting


def child_env(settings):
    database = make_url(settings.database_url).database
    vhost = Connection(settings.amqp_uri).virtual_host
    return dict(os.environ, STEWARD_DB_NAME=database, STEWARD_AMQP_VHOST=vhost, STEWARD_SECRET_KEY=settings.secret_key,
                STEWARD_LOG_LEVEL="WARNING")


@contextlib.contextmanager
def agent_publisher(amqp_uri):
    """publish(message, raw=None): persistent and confirmed, with the connection's broker user as user_id, as
    the control plane relays agent messages; ``raw`` sends those bytes as the body instead."""
    connection = Connection(amqp_uri, transport_options={"confirm_publish": True})
    producer = connection.Producer(exchange=Exchange(EXCHANGE, type="topic", durable=True), serializer="json")

    def publish(message, raw=None):
        key = routing_key(message["kind"], message["server_id"])
        if raw is not None:
            producer.publish(raw, routing_key=key, content_type="application/json", content_encoding="utf-8",
                             delivery_mode=2, user_id=connection.userid)
        else:
            producer.publish(message, routing_key=key, delivery_mode=2, user_id=connection.userid)

    try:
        yield publish
    finally:
        connection.release()


# The monitoring tests wait at most 10 s unless they say otherwise.
wait_for = functools.partial(waiting.wait_for, timeout=10.0)


def message(kind, server_id, seq, collected_at=None, **data):
    at = collected_at or datetime.now(timezone.utc)
    defaults = {
        "heartbeat": {"agent_version": "1.0.0", "versions": {"dns": "3.2.6", "monitor": "1.0.0"}},
        "system": {"load": [0.5, 0.25, 0.125], "disks": [{"mount": "/", "total_bytes": 1000, "used_bytes": 500}],
                   "swap": {"total_bytes": 100, "used_bytes": 10},
                   "memory": {"total_bytes": 4000, "available_bytes": 1000, "used_bytes": 3000},
                   "connections": {"ESTABLISHED": 3, "LISTEN": 5}},
        "dns": {"period_start": (at - timedelta(seconds=60)).isoformat(), "total": 0, "records": []},
    }[kind]
    return {"v": 1, "kind": kind, "server_id": server_id, "seq": seq, "collected_at": at.isoformat(),
            "data": dict(defaults, **data)}


def refused_by_the_database(settings, server_id):
    """A sound message as the consumer dead-letters one the database refused (a transient refusal: the
    one kind of letter a retry is for), published where and how the consumer publishes it; its id."""
    relay = pika.URLParameters(settings.amqp_uri)
    connection = pika.BlockingConnection(relay)
    channel = connection.channel()
    declare_agent_topology(channel)  # the consumer may not have run in this vhost yet
    letter_id = uuid.uuid4().hex
    channel.basic_publish(
        DEAD_LETTER_EXCHANGE, stats_routing_key("system", server_id), json.dumps(message("system", server_id, 1)),
        pika.BasicProperties(content_type="application/json", delivery_mode=2, message_id=letter_id,
                             headers={REASON_HEADER: "the database refused it: could not serialize access",
                                      SENDER_HEADER: relay.credentials.username}))
    connection.close()
    return letter_id
