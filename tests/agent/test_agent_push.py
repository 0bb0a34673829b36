"""Push mode through a real broker: publisher confirms, persistent messages, the
spool keeping what the broker did not take, and a broker restart losing nothing."""
import json
import os
import sqlite3
import subprocess
import urllib.parse

import pika
import pytest

from agent_lab import BrokerReader, assert_contiguous, dns_totals, last_dns_seq, send_queries, unique, wait_for

SERVER_ID = 31


def spooled_dns_periods(tmp_path):
    """DNS periods in the agent's spool: closed, and not yet confirmed by a broker."""
    spool = sqlite3.connect("file:%s?mode=ro" % (tmp_path / "spool" / "spool.sqlite3"), uri=True)
    try:
        return sum(json.loads(body)["kind"] == "dns" for (body,) in spool.execute("SELECT body FROM messages"))
    finally:
        spool.close()


def push_config(tmp_path, url, **overrides):
    parameters = pika.URLParameters(url)
    config = dict(
        server_id=SERVER_ID,
        agent_token="agent-secret",
        communication_type="push",
        rabbitmq={
            "host": parameters.host,
            "port": parameters.port,
            "user": parameters.credentials.username,
            "password": parameters.credentials.password,
            "vhost": parameters.virtual_host,
        },
        dns_interval_seconds=0.2,
        system_interval_seconds=0.2,
        dnstap_socket=str(tmp_path / "dnstap.sock"),
        spool_dir=str(tmp_path / "spool"),
    )
    config.update(overrides)
    return config


@pytest.fixture
def reader(settings):
    """A vhost of this test's own on the machine's broker: no other test's queue may be bound to steward.agent."""
    parameters = pika.URLParameters(settings.amqp_uri)
    vhost = parameters.virtual_host + "_agent_push"
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, parameters.credentials.username, ".*", ".*", ".*"],
                   check=True, capture_output=True)
    url = "amqp://%s:%s@%s:%d/%s" % (parameters.credentials.username, parameters.credentials.password, parameters.host,
                                     parameters.port, urllib.parse.quote(vhost, safe=""))
    reader = BrokerReader(url)
    yield reader
    reader.close()
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)


def test_messages_no_queue_took_yet_stay_spooled_and_arrive_in_order(tmp_path, agent_process, reader):
    config = push_config(tmp_path, reader.url)
    agent = agent_process("stats", **config)
    wait_for(lambda: "did not take" in agent.log(), what="an unroutable publish")  # nothing bound yet
    reader.bind()
    wait_for(lambda: len([m for m in reader.drain() if m["kind"] == "system"]) >= 6, what="system messages")
    assert agent.stop() == 0
    # The DNS period closed on the way out waits in the spool and goes out with the next start.
    agent = agent_process("stats", **config)
    wait_for(lambda: len([m for m in reader.drain() if m["kind"] == "dns"]) >= 12, what="dns messages")
    agent.stop()
    messages = reader.drain()

    assert_contiguous(messages, "system")
    assert_contiguous(messages, "dns")
    assert len(unique(messages)) == len(messages)  # with the broker up throughout, nothing is sent twice
    for routing_key, properties, message in reader.received:
        assert routing_key == "stats.%s.%d" % (message["kind"], SERVER_ID)
        assert (properties.delivery_mode, properties.content_type) == (2, "application/json")
        assert message["server_id"] == SERVER_ID and message["v"] == 1
    assert "agent-secret" not in agent.log()


def test_broker_restart_in_the_middle_of_a_push_run_loses_nothing(tmp_path, agent_process, knot_factory, private_broker):
    reader = BrokerReader(private_broker.url)
    reader.bind()
    agent = agent_process("stats", **push_config(tmp_path, private_broker.url))
    wait_for(lambda: os.path.exists(str(tmp_path / "dnstap.sock")), what="the agent's dnstap socket")
    knot = knot_factory(str(tmp_path / "dnstap.sock"), agent)

    send_queries(knot, [("www.test", "A", 4)])
    wait_for(lambda: dns_totals(reader.drain())[2] == 4, what="the first queries pushed")
    private_broker.stop()
    send_queries(knot, [("www.test", "A", 3), ("pvverify.test", "TXT", 6)])
    wait_for(lambda: "broker unavailable" in agent.log(), what="the agent to notice")
    wait_for(lambda: spooled_dns_periods(tmp_path) >= 3, what="three DNS periods spooled while the broker is away")
    private_broker.start()
    reader.reconnect()
    send_queries(knot, [("pvverify.test", "TXT", 2)])
    messages = wait_for(lambda: (lambda got: dns_totals(got)[2] == 15 and got)(reader.drain()), timeout=30,
                        interval=0.2, what="all 15 queries pushed")
    # Two more DNS periods pushed after that: a query sent twice would be in one of them.
    pushed = last_dns_seq(messages)
    messages = wait_for(lambda: (lambda got: last_dns_seq(got) >= pushed + 2 and got)(reader.drain()), timeout=30,
                        interval=0.2, what="two more DNS periods")
    reader.close()

    hits, _, total = dns_totals(messages)
    assert total == 15
    assert hits == {("www.test.", "A"): 7, ("pvverify.test.", "TXT"): 8}
    assert_contiguous(messages, "dns")
    assert_contiguous(messages, "system")
