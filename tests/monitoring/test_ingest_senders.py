"""Who sent it decides whose data it is: a server's broker user cannot report for another server.

The attack of issue 11: server A's own RabbitMQ user (allowed only ``stats.*.A``)
publishes a message whose body says server B under its own routing key. It
must be dead-lettered with the reason, and B must show nothing.
"""
import json
from urllib.parse import unquote, urlsplit

import pika
import pytest

from agent.push import Publisher
from services.monitoring_ingest.topology import REASON_HEADER, SENDER_HEADER
from services.provisioner.rabbitmq_users import RabbitMQUsers
from shared.schemas.agent import EXCHANGE, agent_broker_user, stats_routing_key

from .helpers import message, wait_for


@pytest.fixture
def vhost(settings):
    return unquote(urlsplit(settings.amqp_uri).path.lstrip("/")) or "/"


@pytest.fixture
def agent_users(rabbitmq_management, vhost):
    """Per-server broker users made as the provisioner makes them; removed after the test."""
    users = RabbitMQUsers("http://127.0.0.1:15672", "guest", "guest", vhost)
    made = []

    def make(server_id):
        made.append(server_id)
        return users.ensure_agent_user(server_id)

    yield make
    for server_id in made:
        users.delete_agent_user(server_id)


def publish_as(settings, vhost, user, password, key, body, user_id):
    """One message to steward.agent as ``user``, with publisher confirms, as the agent publishes."""
    parameters = pika.URLParameters(settings.amqp_uri)
    parameters.credentials = pika.PlainCredentials(user, password)
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(EXCHANGE, key, json.dumps(body).encode(), pika.BasicProperties(
            content_type="application/json", delivery_mode=2, user_id=user_id), mandatory=True)
    finally:
        if connection.is_open:
            connection.close()


def publish_as_the_agent(settings, vhost, user, password, body):
    """One message through the agent's own publisher (agent/push.py), with the server's broker user."""
    amqp = pika.URLParameters(settings.amqp_uri)
    publisher = Publisher(None, {"host": amqp.host, "port": amqp.port, "vhost": vhost, "user": user,
                                 "password": password, "tls": False})
    connection = pika.BlockingConnection(publisher.parameters)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        publisher._publish(channel, json.dumps(body))
    finally:
        connection.close()


def two_servers(rpc, admin):
    return [rpc.call("inventory", "create_server", admin, {"name": name, "address": "127.0.0.1", "os": "ubuntu"})["id"]
            for name in ("victim-a", "victim-b")]


def test_a_servers_broker_user_cannot_report_for_another_server(settings, vhost, rpc, admin, monitoring, agent_users,
                                                                  dead_letters, scalar):
    a, b = two_servers(rpc, admin)
    user, password = agent_users(a)
    forged = message("system", b, 1, disks=[{"mount": "/", "total_bytes": 100, "used_bytes": 99}])
    publish_as(settings, vhost, user, password, stats_routing_key("system", a), forged, user_id=user)
    # Its own report, as the agent sends it, is stored: the forgery came first and was judged by then.
    publish_as_the_agent(settings, vhost, user, password, message("system", a, 1))
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = :s", s=a) == 1)

    assert scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = :s", s=b) == 0
    assert scalar("SELECT count(*) FROM monitoring.disk_alerts WHERE server_id = :s", s=b) == 0
    [(headers, body)] = dead_letters(1)
    assert json.loads(body) == forged
    assert headers[SENDER_HEADER] == user == agent_broker_user(a, vhost)
    assert f"speaks for server {b}" in headers[REASON_HEADER]


def test_a_message_without_its_sender_or_from_another_user_is_dead_lettered(settings, vhost, rpc, admin, monitoring,
                                                                              agent_users, dead_letters, scalar):
    a, b = two_servers(rpc, admin)
    user_a, password_a = agent_users(a)
    user_b, _ = agent_users(b)
    # No user_id: nobody vouches for it, though the broker let user A publish under A's key.
    publish_as(settings, vhost, user_a, password_a, stats_routing_key("system", a), message("system", a, 1),
               user_id=None)
    # The control plane's own user relays for any server, but its key must match the body too.
    relay = pika.URLParameters(settings.amqp_uri).credentials
    publish_as(settings, vhost, relay.username, relay.password, stats_routing_key("system", a),
               message("system", b, 2), user_id=relay.username)
    # The broker itself refuses a user_id that is not the connection's user.
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="user_id"):
        publish_as(settings, vhost, user_a, password_a, stats_routing_key("system", a), message("system", a, 3),
                   user_id=user_b)
    reasons = sorted(headers[REASON_HEADER] for headers, _ in dead_letters(2))
    assert reasons[0] == "no user_id property: who sent it is unknown"
    assert reasons[1].startswith(f"the body speaks for server {b}")
    assert scalar("SELECT count(*) FROM monitoring.system_samples") == 0
