"""The gateway's pooled RPC client against the real broker and a real nameko service:
answers, typed errors, a service that is not running, and a reply sent while the
reply connection is down."""
import threading
from urllib.parse import quote

import eventlet
import pytest

from shared.dependencies import rpc
from shared.errors import NotFound, ServiceUnavailable
from shared.rpc import RpcClient
from tests.waiting import wait_for

CALLER = "rpc-client-test"
received, release = threading.Event(), threading.Event()


class Gate:
    """Answers when the test says so (the container runs in the test's own process)."""

    name = "rpc_client_gate"

    @rpc
    def answer(self, wait=False):
        if wait:
            received.set()
            release.wait(10)
        return "answered"

    @rpc
    def missing(self):
        raise NotFound("no such thing", {"id": ["7"]})


@pytest.fixture
def client(settings, start_service):
    received.clear()
    release.clear()
    start_service(Gate)
    # Reconnecting after 3 s leaves the reply connection down while the test sends a reply.
    client = RpcClient(settings.amqp_uri, timeout=10, caller=CALLER, reconnect_delay=3)
    yield client
    release.set()
    client.close()


def test_answers_typed_errors_and_a_service_that_is_not_running(client):
    assert client.call("rpc_client_gate", "answer") == "answered"
    with pytest.raises(NotFound) as raised:
        client.call("rpc_client_gate", "missing")
    assert raised.value.details == {"id": ["7"]}
    with pytest.raises(ServiceUnavailable, match="service nobody is not running"):
        client.service("nobody").anything()


def test_a_reply_sent_while_the_reply_connection_is_down_still_reaches_its_caller(client, rabbitmq_management):
    assert client.call("rpc_client_gate", "answer") == "answered"  # the reply consumer is up

    def reply_connections():  # the management API lists a new connection within its stats interval
        return [c["name"] for c in rabbitmq_management("GET", "/connections")
                if c.get("client_properties", {}).get("connection_name", "").startswith(f"steward {CALLER} rpc replies")]

    replies = wait_for(reply_connections, what="the reply connection in the management API")
    assert len(replies) == 1
    waiting = eventlet.spawn(client.call, "rpc_client_gate", "answer", wait=True)
    assert received.wait(10)
    rabbitmq_management("DELETE", f"/connections/{quote(replies[0], safe='')}")
    release.set()  # the reply goes out now, seconds before the consumer reconnects

    assert waiting.wait() == "answered"
