"""The agent end to end: real knotd -> dnstap -> agent -> push through the real
broker -> the real monitoring-ingest consumer -> the real PostgreSQL, and its
heartbeats through the real gateway app. Stored counts must be exact."""
import os
import threading
import uuid
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pika
import pytest
from sqlalchemy import text

from shared.crypto import AGENT_TOKEN

from agent_lab import EXPECTED_HITS, PLAN, free_port, send_queries, wait_for
from tests.conftest import TEST_BOX, agent_token


@pytest.fixture
def ingest_consumer(consumer_process):
    """The session's ``python -m services.monitoring_ingest.consumer`` (tests/conftest.py), from empty tables."""
    return consumer_process


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture
def gateway_url(settings, rpc):
    from gateway.app import create_app

    server = make_server("127.0.0.1", free_port(), create_app(settings, rpc=rpc), handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_port
    server.shutdown()
    server.server_close()


def assert_stored_exactly(engine, server_id, last_sent):
    """Wait until all 15 queries of PLAN are stored for the server, then check hits and last access."""

    def stored(sql):
        with engine.connect() as connection:
            return connection.execute(text(sql), {"id": server_id}).all()

    wait_for(lambda: stored("SELECT sum(total) FROM monitoring.dns_periods WHERE server_id = :id")[0][0] == 15,
             timeout=30, interval=0.2, what="15 queries stored")
    hits = stored("SELECT r.name, r.type, sum(r.hits) FROM monitoring.dns_periods, "
                  "jsonb_to_recordset(records) AS r(name text, type text, hits bigint) WHERE server_id = :id GROUP BY 1, 2")
    assert {(name, qtype): count for name, qtype, count in hits} == EXPECTED_HITS
    last_access = dict(((name, qtype), moment) for name, qtype, moment in
                       stored("SELECT name, type, last_access FROM monitoring.dns_record_last_access WHERE server_id = :id"))
    for key, (before, after) in last_sent.items():
        assert before <= last_access[key] <= after, key
    return stored


def create_server(rpc, admin):
    server = rpc.call("inventory", "create_server", admin, {"name": "dns-%s" % uuid.uuid4().hex[:6], "address": "127.0.0.1", "os": "ubuntu"})
    return server, agent_token(rpc, server["id"])


def test_pushed_queries_and_heartbeats_are_stored_exactly(
    tmp_path, settings, engine, rpc, admin, inventory, ingest_consumer, gateway_url, agent_process, knot_factory
):
    server, token = create_server(rpc, admin)
    components = tmp_path / "components.json"
    components.write_text('{"dns": "3.2.6", "monitor": "1.0.0"}')
    amqp = pika.URLParameters(settings.amqp_uri)
    dnstap_socket = str(tmp_path / "dnstap.sock")
    agent = agent_process(
        "all",
        server_id=server["id"],
        agent_token=token,
        monitoring_url=gateway_url,
        communication_type="push",
        rabbitmq={"host": amqp.host, "port": amqp.port, "user": amqp.credentials.username,
                  "password": amqp.credentials.password, "vhost": amqp.virtual_host},
        heartbeat_interval_seconds=0.3,
        dns_interval_seconds=0.3,
        system_interval_seconds=0.5,
        dnstap_socket=dnstap_socket,
        spool_dir=str(tmp_path / "spool"),
        components_file=str(components),
    )
    wait_for(lambda: os.path.exists(dnstap_socket), what="the agent's dnstap socket")
    knot = knot_factory(dnstap_socket, agent)
    last_sent = send_queries(knot, PLAN)

    stored = assert_stored_exactly(engine, server["id"], last_sent)
    wait_for(lambda: stored("SELECT count(*) FROM monitoring.heartbeats WHERE server_id = :id")[0][0] >= 2,
             what="heartbeats stored")
    # Up while it beats: the tests' down threshold is 1 s, so after the agent stops a loaded machine may
    # rightly see it down before the next query.
    wait_for(lambda: stored("SELECT state FROM monitoring.liveness WHERE server_id = :id") == [("up",)],
             what="the server up")
    agent.stop()
    versions = stored("SELECT versions FROM monitoring.heartbeats WHERE server_id = :id ORDER BY seq DESC LIMIT 1")[0][0]
    assert versions == {"dns": "3.2.6", "monitor": "1.0.0"}
    assert stored("SELECT count(*) FROM monitoring.system_samples WHERE server_id = :id")[0][0] >= 1


def test_pulled_queries_are_stored_exactly(tmp_path, engine, rpc, admin, inventory, ingest_consumer, start_service,
                                           agent_process, knot_factory):
    from services.monitoring_ingest.service import MonitoringIngestService

    start_service(MonitoringIngestService, {"monitoring_ingest": {"retention_interval_seconds": 0}})
    server, token = create_server(rpc, admin)
    dnstap_socket, port = str(tmp_path / "dnstap.sock"), free_port()
    agent = agent_process(
        "stats", server_id=server["id"], agent_token=token, communication_type="pull", pull_listen="127.0.0.1",
        pull_port=port, dns_interval_seconds=0.3, system_interval_seconds=0.5, dnstap_socket=dnstap_socket,
        spool_dir=str(tmp_path / "spool"),
    )
    wait_for(lambda: os.path.exists(dnstap_socket), what="the agent's dnstap socket")
    rpc.call("monitoring_ingest", "set_pull_target", server["id"], "127.0.0.1", TEST_BOX.seal_for(AGENT_TOKEN, token), 1,
             port)
    knot = knot_factory(dnstap_socket, agent)
    last_sent = send_queries(knot, PLAN)

    stored = assert_stored_exactly(engine, server["id"], last_sent)
    assert stored("SELECT count(*) FROM monitoring.system_samples WHERE server_id = :id")[0][0] >= 1
