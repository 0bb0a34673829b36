"""monitoring-ingest on the real broker and database: the batch consumer as a real
process and the nameko service in a real container (tests/conftest.py: consumer_process, monitoring),
the gateway app in front."""
import uuid

import pika
import pytest
from falcon import testing
from sqlalchemy import text

from .helpers import agent_publisher
from tests import waiting
from tests.events import capture_events


@pytest.fixture
def agent_publish(settings, consumer_process):
    """Publish agent messages as the control plane relays them (the gateway, the poller): as its own broker user."""
    with agent_publisher(settings.amqp_uri) as publish:
        yield publish


@pytest.fixture
def dead_letters(settings):
    """The dead-letter queue, emptied first; ``take(n)`` waits for n messages: [(headers, body bytes)]."""
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_uri))
    channel = connection.channel()
    channel.queue_purge("monitoring.dead")

    def take(count):
        taken = []

        def more():
            method, properties, body = channel.basic_get("monitoring.dead", auto_ack=True)
            if method is not None:
                taken.append((properties.headers or {}, body))
            return len(taken) >= count

        waiting.wait_for(more, timeout=10, what=f"{count} dead-lettered messages")
        return taken

    yield take
    connection.close()


@pytest.fixture
def monitoring_events(settings):
    """Every event monitoring-ingest emits during the test."""
    with capture_events(settings, "monitoring_ingest") as drain:
        yield drain


@pytest.fixture
def scalar(engine):
    def query(sql, **params):
        with engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    return query


@pytest.fixture
def api(settings, rpc, inventory):
    from gateway.app import create_app

    app = create_app(settings, rpc=rpc)
    return testing.TestClient(app)


@pytest.fixture
def server(rpc, admin):
    return rpc.call("inventory", "create_server", admin,
                    {"name": f"dns-{uuid.uuid4().hex[:6]}", "address": "127.0.0.1", "os": "ubuntu"})
