"""The batch consumer with its database really gone (a forwarder in front of PostgreSQL, cut): nothing
is dead-lettered, the batch waits, unacknowledged, and is stored once the database is back; stopped
(SIGTERM) while the database is away, the consumer leaves the batch on the queue for the next one."""
import signal
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from scripts.sandbox import ensure_vhost
from shared.config import load_settings
from tests.forwarder import Forwarder
from tests.queues import queue_depth
from tests.conftest import ROOT
from .helpers import agent_publisher, child_env, message, wait_for

SERVER = 61


@pytest.fixture
def isolated(settings):
    """Settings of a vhost of the test's own, with PostgreSQL behind a forwarder the test can cut: no
    other consumer takes its messages, and only its consumer loses the database."""
    vhost = f"steward_dbdown_{uuid.uuid4().hex[:8]}"
    ensure_vhost(vhost)
    database = make_url(settings.database_url)
    forwarder = Forwarder((database.host, database.port or 5432))
    env = dict(child_env(settings), STEWARD_AMQP_VHOST=vhost, STEWARD_DB_PORT=str(forwarder.port),
               STEWARD_LOG_LEVEL="INFO")
    yield load_settings(environ=env), env, forwarder
    forwarder.cut()
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)


@pytest.fixture
def consumers(tmp_path):
    started = []

    def start(env):
        log = tmp_path / f"consumer-{len(started)}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen([sys.executable, "-m", "services.monitoring_ingest.consumer", "--batch-ms", "30"],
                                       cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        started.append(process)
        return process, log

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_batch_waits_on_the_queue_while_the_database_is_away(isolated, consumers, engine):
    settings, env, database = isolated

    def stored():
        with engine.connect() as connection:
            return connection.execute(text(
                "SELECT (SELECT count(*) FROM monitoring.system_samples WHERE server_id = :s), "
                "(SELECT coalesce(sum(samples), 0) FROM monitoring.system_aggregates "
                "WHERE server_id = :s AND resolution = 'minute')"), {"s": SERVER}).one()

    def held_not_dead():
        return queue_depth(settings, "monitoring.stats") == (0, 1) and queue_depth(settings, "monitoring.dead") == (0, 0)

    consumer, log = consumers(env)
    wait_for(lambda: log.exists() and "consuming" in log.read_text(), what="the consumer")
    with agent_publisher(settings.amqp_uri) as publish:
        publish(message("system", SERVER, 1))
        wait_for(lambda: tuple(stored()) == (1, 1), what="the first message stored")

        database.cut()
        publish(message("system", SERVER, 2))
        wait_for(lambda: "batch write failed; retrying" in log.read_text(), what="a failed write")
        wait_for(held_not_dead, what="the message held, unacknowledged")
        database.restore()
        wait_for(lambda: tuple(stored()) == (2, 2), what="the message stored once the database is back")
        wait_for(lambda: queue_depth(settings, "monitoring.stats") == (0, 0), what="it acknowledged")

        database.cut()
        failures = log.read_text().count("batch write failed; retrying")
        publish(message("system", SERVER, 3))
        wait_for(lambda: log.read_text().count("batch write failed; retrying") > failures, what="a failed write")
        wait_for(held_not_dead, what="the message held, unacknowledged")
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(60) == 0
        assert "the batch stays on the queue" in log.read_text()
        assert queue_depth(settings, "monitoring.stats") == (1, 0)  # back on the queue, not dead-lettered
        assert queue_depth(settings, "monitoring.dead") == (0, 0)

    database.restore()
    consumers(env)
    wait_for(lambda: tuple(stored()) == (3, 3), what="the next consumer storing it")
    wait_for(lambda: queue_depth(settings, "monitoring.stats") == (0, 0), what="it acknowledged")
