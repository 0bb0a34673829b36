"""503 as an API client sees it: the broker unreachable, a service whose queue nobody consumes, a
service that is not there at all. Always the JSON error body, never a hang or a 500."""
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import eventlet
import pytest
from falcon import testing
from kombu import Connection, Exchange, Producer, Queue

from gateway.app import create_app
from gateway.app import rpc_client as gateway_rpc_client
from gateway.routes import PREFIX
import shared.rpc
from shared.config import Settings, load_settings
from shared.rpc import RPC_EXCHANGE, RpcClient
from tests.monitoring.helpers import child_env
from tests.waiting import wait_for

RPC_SECONDS = 1.0  # how long the test's gateway waits for an answer


def _unavailable(response, message):
    assert response.status_code == 503, response.text
    body = response.json
    assert body["error"] == "service_unavailable" and message in body["message"] and isinstance(body["details"], dict)
    return body


@pytest.fixture
def rpc_client(settings):
    clients = []

    def make(amqp_uri):
        clients.append(RpcClient(amqp_uri, timeout=RPC_SECONDS, caller="tests-unavailable"))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def test_a_broker_nobody_can_reach_is_a_503_not_a_hang(settings, rpc_client, admin_token):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = load_settings(environ=dict(child_env(settings), STEWARD_AMQP_PORT=str(port)))
    client = testing.TestClient(create_app(unreachable, rpc=rpc_client(unreachable.amqp_uri)))
    auth = {"Authorization": f"Bearer {admin_token}"}

    body = _unavailable(client.simulate_get(f"{PREFIX}/servers", headers=auth), "message broker is not reachable")
    assert "guest:guest" not in str(body)  # the broker's password is masked
    health = client.simulate_get("/healthz")
    assert health.status_code == 503 and health.json["status"] == "degraded"
    assert health.json["broker"]["reachable"] is False
    assert all(not service["reachable"] for service in health.json["services"].values())


def test_a_service_stopped_or_hung_is_a_503(settings, start_service, rpc_client, admin_token, inventory):
    from services.notifier.service import NotifierService

    client = testing.TestClient(create_app(settings, rpc=rpc_client(settings.amqp_uri)))
    auth = {"Authorization": f"Bearer {admin_token}"}
    notifier = start_service(NotifierService)
    assert client.simulate_get(f"{PREFIX}/notifications/channels", headers=auth).status_code == 200

    notifier.stop()  # nobody consumes its requests now: refused at once
    _unavailable(client.simulate_get(f"{PREFIX}/notifications/channels", headers=auth), "service notifier is not running")
    health = client.simulate_get("/healthz")
    assert health.status_code == 503 and health.json["services"]["notifier"]["reachable"] is False

    with Connection(settings.amqp_uri) as connection:
        # A replica that takes requests and never answers (hung): the call waits out its time.
        queue = Queue("rpc-notifier", Exchange(RPC_EXCHANGE, type="topic", durable=True), routing_key="notifier.*",
                      durable=True)
        with connection.Consumer(queue, callbacks=[lambda body, message: None], no_ack=True):
            _unavailable(client.simulate_get(f"{PREFIX}/notifications/channels", headers=auth),
                         f"service notifier did not answer list_channels within {RPC_SECONDS:g} s")
        queue(connection.default_channel).delete()
    _unavailable(client.simulate_get(f"{PREFIX}/notifications/channels", headers=auth),
                 "service notifier is not running")
    # Inventory still answers: one service down takes nothing else with it.
    assert client.simulate_get(f"{PREFIX}/servers", headers=auth).status_code == 200


def test_a_hung_service_holds_only_its_share_of_the_gateways_threads(settings, admin_token, inventory):
    """Three threads stand for a gateway worker's; the bound is two calls per service. With two calls
    held by a replica that never answers, a third call to it is refused at once, naming it, and a
    route to a healthy service is answered while the two still wait."""
    bounded = Settings(dict(settings, gateway=dict(settings.section("gateway"), calls_per_service=2)))
    gateway_rpc = gateway_rpc_client(bounded)
    client = testing.TestClient(create_app(bounded, rpc=gateway_rpc))
    auth = {"Authorization": f"Bearer {admin_token}"}
    channels = f"{PREFIX}/notifications/channels"
    held, stop = [], threading.Event()
    exchange = Exchange(RPC_EXCHANGE, type="topic", durable=True)
    queue = Queue("rpc-notifier", exchange, routing_key="notifier.*", durable=True)

    def hung_replica(connection):  # takes requests and answers none until told
        with connection.Consumer(queue, callbacks=[lambda body, message: held.append(message)], no_ack=True):
            while not stop.is_set():
                try:
                    connection.drain_events(timeout=0.2)
                except socket.timeout:
                    pass

    with Connection(settings.amqp_uri) as connection, ThreadPoolExecutor(3) as threads:
        replica = eventlet.spawn(hung_replica, connection)
        try:
            waiting = [threads.submit(client.simulate_get, channels, headers=auth) for _ in range(2)]
            wait_for(lambda: len(held) == 2, what="the hung replica holding two calls")

            busy = _unavailable(threads.submit(client.simulate_get, channels, headers=auth).result(),
                                "service notifier is busy")
            assert busy["details"] == {"service": ["notifier"]}
            servers = threads.submit(client.simulate_get, f"{PREFIX}/servers", headers=auth).result()
            assert servers.status_code == 200 and servers.json["total"] == 0
            assert not any(call.done() for call in waiting)  # still held: the healthy route did not wait for them
        finally:
            stop.set()
            replica.wait()
        with Producer(connection.default_channel, exchange=exchange, serializer="json") as replies:
            for message in held:  # the replica answers at last: both callers get their channels
                replies.publish({"result": [], "error": None}, routing_key=message.properties["reply_to"],
                                correlation_id=message.properties["correlation_id"])
        assert [call.result().json for call in waiting] == [[], []]
        queue(connection.default_channel).delete()
    gateway_rpc.close()


def test_a_slow_service_answers_every_call_beyond_its_share_in_turn(settings, admin_token, inventory, monkeypatch):
    """The bound is two calls per service, a hung service is one whose calls end for 2 s; a replica answers
    each call 1.2 s after taking it. Eight calls at once: the last two wait 3.6 s for their turn, longer
    than any fixed wait for a slot would, while calls end, and every one is answered (none refused)."""
    monkeypatch.setattr(shared.rpc, "SLOT_STALL_SECONDS", 2.0)
    bounded = Settings(dict(settings, gateway=dict(settings.section("gateway"), calls_per_service=2)))
    gateway_rpc = gateway_rpc_client(bounded)
    client = testing.TestClient(create_app(bounded, rpc=gateway_rpc))
    auth = {"Authorization": f"Bearer {admin_token}"}
    channels = f"{PREFIX}/notifications/channels"
    assert client.simulate_get(f"{PREFIX}/servers", headers=auth).status_code == 200  # the token checked and cached
    taken, consuming, stop = [], threading.Event(), threading.Event()
    exchange = Exchange(RPC_EXCHANGE, type="topic", durable=True)
    queue = Queue("rpc-notifier", exchange, routing_key="notifier.*", durable=True)

    def slow_replica(connection):  # answers each request 1.2 s after taking it
        with connection.Consumer(queue, callbacks=[lambda body, message: taken.append((time.monotonic(), message))],
                                 no_ack=True), Producer(connection.default_channel, exchange=exchange,
                                                        serializer="json") as replies:
            consuming.set()
            while not stop.is_set():
                try:
                    connection.drain_events(timeout=0.05)
                except socket.timeout:
                    pass
                while taken and time.monotonic() - taken[0][0] >= 1.2:
                    message = taken.pop(0)[1]
                    replies.publish({"result": [], "error": None}, routing_key=message.properties["reply_to"],
                                    correlation_id=message.properties["correlation_id"])

    with Connection(settings.amqp_uri) as connection, ThreadPoolExecutor(8) as threads:
        replica = eventlet.spawn(slow_replica, connection)
        try:
            wait_for(consuming.is_set, what="the slow replica consuming")
            calls = [threads.submit(client.simulate_get, channels, headers=auth) for _ in range(8)]
            answers = [call.result() for call in calls]
        finally:
            stop.set()
            replica.wait()
        queue(connection.default_channel).delete()
    assert [(a.status_code, a.json) for a in answers] == [(200, [])] * 8
    gateway_rpc.close()
