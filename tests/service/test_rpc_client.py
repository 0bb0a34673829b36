"""The one RPC client (shared/rpc.py) against the real broker and real nameko services:
answers, typed errors, a service that is not running (never was, or stopped), a reply sent
while the reply connection is down, a request whose deadline passed before the service got
to it; and the same client in a service's RpcProxy dependency, where no call waits longer
than the configured timeout or its own caller's deadline."""
import logging
import threading
import time
from urllib.parse import quote

import eventlet
import pytest
from kombu import Connection
from nameko.extensions import DependencyProvider

from shared.dependencies import RequestContext, RpcProxy, rpc, worker_deadline
from shared.errors import NotFound, ServiceNotRunning, ServiceUnavailable
from shared.logs import request_id_var
from shared.rpc import RpcClient, rpc_queue
from tests.waiting import wait_for

CALLER = "rpc-client-test"
received, release = threading.Event(), threading.Event()
runs = []  # what the gate ran, in order


class Deadline(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return worker_deadline(worker_ctx)


class Gate:
    """Answers when the test says so (the container runs in the test's own process)."""

    name = "rpc_client_gate"
    request_id = RequestContext()
    deadline = Deadline()

    @rpc
    def answer(self, wait=False, label=None):
        runs.append(label)
        if wait:
            received.set()
            release.wait(10)
        return "answered"

    @rpc
    def missing(self):
        raise NotFound("no such thing", {"id": ["7"]})

    @rpc
    def whose_request(self):
        return self.request_id

    @rpc
    def whose_deadline(self):
        return self.deadline


class Caller:
    """A service calling another through the RpcProxy dependency."""

    name = "rpc_proxy_caller"
    gate = RpcProxy("rpc_client_gate")
    nobody = RpcProxy("nobody")

    @rpc
    def ask(self, method, **kwargs):
        return getattr(self.gate, method)(**kwargs)

    @rpc
    def ask_nobody(self):
        return self.nobody.anything()


@pytest.fixture
def client(settings, start_service):
    received.clear()
    release.clear()
    runs.clear()
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


class SlowStartingClient(RpcClient):
    """Its reply consumer connects a second late, as a fresh process's may on a loaded machine."""

    def _consume_forever(self):
        time.sleep(1)
        super()._consume_forever()


def test_every_first_caller_of_a_process_waits_for_its_reply_queue(client, settings):
    """Two threads make a fresh process's first calls: the second, arriving while the first waits for the reply
    consumer, must wait too, or its request goes out before the reply queue exists and its answer is dropped."""
    fresh = SlowStartingClient(settings.amqp_uri, timeout=5, caller=f"{CALLER}-fresh")
    answers = []
    try:
        first = threading.Thread(target=lambda: answers.append(fresh.call("rpc_client_gate", "answer")))
        first.start()
        wait_for(lambda: fresh._pid is not None, what="the first call to start the reply consumer")
        answers.append(fresh.call("rpc_client_gate", "answer"))
        first.join(10)
    finally:
        fresh.close()
    assert answers == ["answered", "answered"]


def test_a_service_that_stopped_fails_at_once_though_its_queue_remains(client, settings, start_service):
    stopped = start_service(Stopping)
    assert client.call("rpc_stopping", "ping") == "pong"
    stopped.stop()  # its durable queue stays and would take the request; nobody consumes it
    with pytest.raises(ServiceUnavailable, match="service rpc_stopping is not running"):
        client.call("rpc_stopping", "ping")  # not "did not answer ping within 10 s"


def test_a_patient_call_waits_for_a_replica_to_start_and_gives_up_after_its_time(client, start_service, caplog):
    caplog.set_level(logging.INFO, logger="shared.rpc")
    with pytest.raises(ServiceNotRunning):
        client.service("rpc_late").ping()  # impatient: at once
    with pytest.raises(ServiceNotRunning):
        client.service("rpc_late").patient(1.5).ping()  # patient, for its time only
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(client.service("rpc_late").patient(60).ping()))
    waiting.start()
    wait_for(lambda: caplog.text.count("service rpc_late is not running: ping waits for a replica") >= 3,
             what="the patient call waiting")  # two from the call that gave up, one (at least) from this one
    start_service(Late)
    waiting.join(30)
    assert answers == ["pong"]


class Late:
    name = "rpc_late"

    @rpc
    def ping(self):
        return "pong"


class Stopping:
    name = "rpc_stopping"

    @rpc
    def ping(self):
        return "pong"


def waiting_in_queue(amqp_uri, queue):
    with Connection(amqp_uri) as connection:
        return connection.default_channel.queue_declare(queue=queue, passive=True).message_count


class Slow:
    """One worker: while it works, the next request waits on the broker."""

    name = "rpc_slow"

    @rpc
    def work(self, label, wait=False):
        runs.append(label)
        if wait:
            received.set()
            release.wait(10)
        return label


def test_a_request_whose_deadline_passed_while_the_service_was_down_is_dropped_unrun(
        client, settings, start_service, caplog):
    slow = start_service(Slow, {"max_workers": 1})
    first = eventlet.spawn(client.call, "rpc_slow", "work", "first", wait=True, timeout=3)
    assert received.wait(10)
    second = eventlet.spawn(client.call, "rpc_slow", "work", "second", timeout=3)
    wait_for(lambda: waiting_in_queue(settings.amqp_uri, rpc_queue("rpc_slow")) == 1,
             what="the second request waiting on the broker")
    slow.kill()  # down with both requests unacknowledged: they go back to the queue
    for waiting in (first, second):
        with pytest.raises(ServiceUnavailable, match="did not answer work within 3 s"):
            waiting.wait()
    release.set()
    caplog.set_level(logging.WARNING, logger="steward.rpc")

    start_service(Slow)  # back, with both requests waiting for it, their callers long gone
    wait_for(lambda: waiting_in_queue(settings.amqp_uri, rpc_queue("rpc_slow")) == 0, what="the queue drained")
    wait_for(lambda: len([r for r in caplog.records if "dropped rpc_slow.work unrun" in r.getMessage()]) == 2,
             what="both requests dropped, and logged")
    assert runs == ["first"]  # run once, before the service went down; never again, and the second never


def test_a_call_from_a_worker_ends_with_its_callers_deadline(client, start_service):
    start_service(Caller)  # its own calls may take RPC_TIMEOUT_SECONDS (10 s)
    before = time.time()
    deadline = client.call("rpc_proxy_caller", "ask", "whose_deadline", timeout=3)
    assert before < deadline <= time.time() + 3  # the caller's 3 s went along, not a fresh 10 s


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


def test_a_reply_connection_busy_with_replies_keeps_its_heartbeats_going(client, settings, caplog):
    """With replies arriving more often than its wait times out, the reply consumer must still send the broker
    heartbeats; else the broker closes the connection as dead (here after about 2 x 2 s) with replies in flight."""
    caplog.set_level(logging.WARNING, logger="shared.rpc")
    busy = RpcClient(settings.amqp_uri, timeout=5, caller=f"{CALLER}-busy", reply_heartbeat=2)
    try:
        answered, until = 0, time.monotonic() + 10
        while time.monotonic() < until:  # a reply every ~0.1 s: the consumer's 1 s wait never times out
            assert busy.call("rpc_client_gate", "answer") == "answered"
            answered += 1
            time.sleep(0.1)
    finally:
        busy.close()
    assert answered > 50
    assert "rpc reply consumer lost its connection" not in caplog.text


def test_a_service_calls_another_with_typed_errors_the_request_id_and_a_deadline(client, start_service):
    start_service(Caller, {"RPC_TIMEOUT_SECONDS": 1})
    assert client.call("rpc_proxy_caller", "ask", "answer") == "answered"
    with pytest.raises(NotFound) as raised:  # typed through both hops, not a RemoteError
        client.call("rpc_proxy_caller", "ask", "missing")
    assert raised.value.details == {"id": ["7"]}
    request_id_var.set("req-proxy-test")
    assert client.call("rpc_proxy_caller", "ask", "whose_request") == "req-proxy-test"
    with pytest.raises(ServiceUnavailable, match="service nobody is not running"):
        client.call("rpc_proxy_caller", "ask_nobody")

    # The gate holds its answer: the caller's call gives up after its 1 s, long before the test's 10 s.
    with pytest.raises(ServiceUnavailable, match="service rpc_client_gate did not answer answer within 1 s"):
        client.call("rpc_proxy_caller", "ask", "answer", wait=True)
