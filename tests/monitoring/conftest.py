"""monitoring-ingest on the real broker and database: the batch consumer as a real
process, the nameko service in a real container, the gateway app in front."""
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from falcon import testing
from kombu import Connection, Exchange
from sqlalchemy import text

from shared.schemas.agent import EXCHANGE, heartbeat_routing_key, stats_routing_key

from .helpers import child_env
from tests.events import capture_events

ROOT = Path(__file__).resolve().parents[2]
# Short intervals: a silent server goes down after 1 s; retention runs only when a test asks.
SERVICE_CONFIG = {"monitoring_ingest": {"down_after_seconds": 1, "retention_interval_seconds": 0}}


@pytest.fixture(autouse=True)
def clean_monitoring(request):
    """tests/conftest.py empties each service's schema by service name; this one's is ``monitoring``."""
    if "settings" not in request.fixturenames and "engine" not in request.fixturenames:
        yield
        return
    engine = request.getfixturevalue("engine")
    with engine.begin() as connection:
        tables = connection.execute(text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'monitoring' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND c.relname <> 'alembic_version'")).scalars().all()
        connection.execute(text(f"TRUNCATE {', '.join(f'monitoring.{t}' for t in tables)}"))
    yield


@pytest.fixture(scope="session")
def consumer_process(settings, tmp_path_factory):
    """``python -m services.monitoring_ingest.consumer`` for the whole session."""
    log = tmp_path_factory.mktemp("consumer") / "consumer.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "services.monitoring_ingest.consumer", "--batch-ms", "30"],
                                   cwd=ROOT, env=child_env(settings), stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    with Connection(settings.amqp_uri) as connection:
        while True:  # ready once it has declared and consumes its queues
            try:
                if connection.default_channel.queue_declare("monitoring.stats", passive=True).consumer_count:
                    break
            except Exception:
                connection.close()
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the consumer did not start:\n{log.read_text()}")
            time.sleep(0.1)
    yield process
    process.terminate()
    process.wait(20)


@pytest.fixture(scope="session")
def monitoring(start_shared_service, inventory, consumer_process):
    from services.monitoring_ingest.service import MonitoringIngestService

    return start_shared_service(MonitoringIngestService, SERVICE_CONFIG)


@pytest.fixture
def agent_publish(settings, consumer_process):
    """Publish agent messages as a push-mode agent does."""
    connection = Connection(settings.amqp_uri, transport_options={"confirm_publish": True})
    producer = connection.Producer(exchange=Exchange(EXCHANGE, type="topic", durable=True), serializer="json")

    def publish(message, raw=None):
        key = (heartbeat_routing_key(message["server_id"]) if message["kind"] == "heartbeat"
               else stats_routing_key(message["kind"], message["server_id"]))
        if raw is not None:
            producer.publish(raw, routing_key=key, content_type="application/json", content_encoding="utf-8",
                             delivery_mode=2)
        else:
            producer.publish(message, routing_key=key, delivery_mode=2)

    yield publish
    connection.release()


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
