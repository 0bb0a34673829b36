"""/healthz as a load balancer and an operator see it: the ingest batch consumer is part of it (a consumer on its
queues, a backlog that does not keep growing), a call costs no broker connection, and the per-service view
(every service asked, with its database) needs a token."""
import os
import signal
import subprocess
import sys

import pytest
from falcon import testing
from kombu import Connection, Producer

from gateway.app import create_app
from gateway.resources.health import HealthProbe
from scripts.sandbox import ensure_vhost
from shared.config import Settings, load_settings, registered_services
from shared.publisher import ConfirmedPublisher
from shared.schemas.agent import EXCHANGE, HEARTBEAT_QUEUE, STATS_QUEUE
from tests.monitoring.helpers import child_env
from tests.stack import ROOT
from tests.waiting import wait_for

FAST = {"health_interval_seconds": 0.2, "health_max_backlog_seconds": 1}


def _health(client):
    response = client.simulate_get("/healthz")
    return response.status_code, response.json


@pytest.fixture
def own_broker(settings, tmp_path):
    """A vhost of the test's own with a real ingest consumer on it (small batches, so a small prefetch), and
    a gateway app whose /healthz expects no service there: what it says is the broker and the consumer."""
    vhost = f"{os.environ.get('STEWARD_TEST_VHOST', 'steward_test')}_health"
    ensure_vhost(vhost)
    env = dict(child_env(settings), STEWARD_AMQP_VHOST=vhost)
    own = load_settings(environ=env)
    own = Settings(dict(own, gateway=dict(own.section("gateway"), **FAST)))
    log = tmp_path / "consumer.log"
    with open(log, "wb") as output:
        consumer = subprocess.Popen([sys.executable, "-m", "services.monitoring_ingest.consumer", "--batch-size", "5"],
                                    cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    publisher = ConfirmedPublisher(own.amqp_uri, EXCHANGE)
    try:
        yield own, testing.TestClient(create_app(own, agent_publisher=publisher, services=[])), consumer
    finally:
        consumer.kill()
        consumer.wait(20)
        publisher.close()


def test_healthz_is_503_when_the_ingest_consumer_is_dead_or_falls_behind(own_broker):
    own, client, consumer = own_broker
    # (60 s: the consumer just started, and a loaded machine takes long to import and connect it)
    status, body = wait_for(lambda: (lambda h: h[0] == 200 and h)(_health(client)), timeout=60, what="/healthz ok")
    assert body["ingest"][STATS_QUEUE]["consumers"] == 1 and body["broker"]["reachable"] is True

    consumer.send_signal(signal.SIGSTOP)  # connected, consuming nothing: its queue grows past its prefetch
    with Connection(own.amqp_uri) as connection, Producer(connection.default_channel) as producer:
        for _ in range(60):
            producer.publish(b"{}", routing_key=STATS_QUEUE, content_type="application/json")
    status, body = wait_for(lambda: (lambda h: h[0] == 503 and h)(_health(client)), what="/healthz 503")
    assert body["ingest"][STATS_QUEUE]["consumers"] == 1 and body["ingest"][STATS_QUEUE]["messages"] > 0
    assert any("is not keeping up" in problem for problem in body["problems"]), body

    consumer.send_signal(signal.SIGCONT)  # it takes the backlog (refusing the empty messages): healthy again
    wait_for(lambda: _health(client)[0] == 200, what="/healthz ok once drained")

    consumer.kill()
    status, body = wait_for(lambda: (lambda h: h[0] == 503 and h)(_health(client)), what="/healthz 503")
    assert body["ingest"][STATS_QUEUE]["consumers"] == 0
    assert f"nothing consumes {STATS_QUEUE}: the ingest consumer is not running" in body["problems"]


def test_healthz_holds_one_connection_per_process_and_the_service_view_needs_a_token(
        settings, rpc, admin_token, all_services, consumer_process, rabbitmq_management):
    def probe_connections():
        names = (c.get("client_properties", {}).get("connection_name", "") for c in rabbitmq_management("GET", "/connections"))
        return [name for name in names if name == probe.connection_name]

    own = Settings(dict(settings, gateway=dict(settings.section("gateway"), **FAST)))
    options = own.section("gateway")
    probe = HealthProbe(own.amqp_uri, registered_services(), (STATS_QUEUE, HEARTBEAT_QUEUE),
                        interval=options["health_interval_seconds"],
                        max_backlog_seconds=options["health_max_backlog_seconds"])
    client = testing.TestClient(create_app(own, rpc=rpc, health_probe=probe))
    for _ in range(20):
        status, body = _health(client)
    assert status == 200 and body["status"] == "ok", body
    assert set(body["services"]) == set(registered_services())
    assert all(s["replicas"] >= 1 and "latency_ms" not in s for s in body["services"].values())  # no RPC asked

    # The broker's connection list lags by its statistics interval: wait for the probe's, then count.
    wait_for(probe_connections, what="the probe's connection listed")
    assert len(probe_connections()) == 1  # twenty calls, one connection

    assert client.simulate_get("/healthz/services").status_code == 401
    detail = client.simulate_get("/healthz/services", headers={"Authorization": f"Bearer {admin_token}"})
    assert detail.status_code == 200, detail.text
    assert all(s["reachable"] and s["database"] == "ok" and "latency_ms" in s for s in detail.json["services"].values())
