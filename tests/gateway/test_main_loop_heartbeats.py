"""Agents' heartbeats answered on the gateway worker's main loop (gateway/worker.py), under gunicorn as `make up`
runs it: answered while the worker's only thread is held, each once the broker has its message; what the
app refuses is answered there too, and what would wait on inventory (a token not in the cache) goes to a
thread and gets the same answer as ever."""
import contextlib
import http.client
import json
import socket
from datetime import datetime, timedelta, timezone
from itertools import count

import pytest
from kombu import Connection, Exchange, Queue

from gateway.routes import PREFIX
from shared.schemas.agent import EXCHANGE, heartbeat_routing_key
from tests.conftest import agent_token
from tests.gateway.served import served_gateway
from tests.monitoring.helpers import child_env
from tests.waiting import wait_for

_seq = count(1)


@pytest.fixture
def gateway(settings, tmp_path, inventory, provisioner):
    """gunicorn with one worker of one thread: ``make(**env)`` -> its port."""
    started = count(1)
    with contextlib.ExitStack() as stack:

        def make(**extra):
            env = dict(child_env(settings), STEWARD_GATEWAY_WORKERS="1", STEWARD_GATEWAY_THREADS="1",
                       STEWARD_GATEWAY_IDLE_TIMEOUT="20", STEWARD_UPDATER_STORAGE=str(tmp_path / "images"), **extra)
            return stack.enter_context(served_gateway(env, tmp_path / f"gunicorn-{next(started)}.log")).port

        yield make


def _heartbeat(server_id, **changes):
    beat = {"v": 1, "kind": "heartbeat", "server_id": server_id, "seq": next(_seq),
            "collected_at": datetime.now(timezone.utc).isoformat(), "data": {"agent_version": "1.0.0"}}
    return json.dumps(dict(beat, **changes))


def _post(connection, token, body):
    connection.request("POST", f"{PREFIX}/monitoring/heartbeat", body,
                       {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"null"), response


def _new_server(port, admin_token, name):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", f"{PREFIX}/servers", json.dumps(
        {"name": name, "address": f"{name}.example.com", "os": "ubuntu", "ssh_password": "hunter2-secret"}),
        {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 201, response.read()
    return json.loads(response.read())["id"]


def _hold_the_thread(port, admin_token):
    """A create whose chunked body stops arriving: the worker's one thread reads it until its idle timeout."""
    held = socket.create_connection(("127.0.0.1", port))
    held.sendall((f"POST {PREFIX}/servers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin_token}\r\n"
                  "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"nam").encode())
    return held


def _thread_is_held(port):
    """A request only a thread answers (the API's own page) gets no answer within 1.5 s."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.5)
    try:
        connection.request("GET", f"{PREFIX}/openapi.json")
        connection.getresponse()
        return False
    except socket.timeout:
        return True
    finally:
        connection.close()


def test_heartbeats_are_answered_on_the_main_loop_while_the_only_thread_is_held(gateway, settings, rpc, admin_token):
    port = gateway()
    server_id = _new_server(port, admin_token, f"loop-{next(_seq)}")
    token = agent_token(rpc, server_id)
    with Connection(settings.amqp_uri) as broker:
        copies = Queue(f"tests.loop.{server_id}", exchange=Exchange(EXCHANGE, type="topic", durable=True),
                       routing_key=heartbeat_routing_key(server_id), exclusive=True)(broker.default_channel)
        copies.declare()
        agent = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        # The worker's token copy loads once its revocation feed consumes; until then heartbeats go to the thread.
        wait_for(lambda: _post(agent, token, _heartbeat(server_id))[0] == 202, what="a first heartbeat")

        held = _hold_the_thread(port, admin_token)
        try:
            assert _thread_is_held(port)
            for _ in range(5):  # one keep-alive connection, as an agent's
                status, body, response = _post(agent, token, _heartbeat(server_id))
                assert status == 202 and body["accepted"] is True and body["server_id"] == server_id
                assert response.getheader("Connection") == "keep-alive" and response.getheader("X-Request-Id")
            # Refused by the app on the main loop too: the clock 10 minutes ahead.
            ahead = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
            status, body, _ = _post(agent, token, _heartbeat(server_id, collected_at=ahead))
            assert status == 400 and "collected_at" in body["details"], body
        finally:
            held.close()
        messages = []
        while (message := broker.default_channel.basic_get(copies.name, no_ack=True)) is not None:
            messages.append(message)
        assert len(messages) >= 6  # the first heartbeat and the five; the refused one is not there
        assert {m.properties["user_id"] for m in messages} == {Connection(settings.amqp_uri).userid}
        assert all(json.loads(m.body)["server_id"] == server_id for m in messages)


def test_a_token_not_in_the_cache_goes_to_a_thread_and_is_refused_as_ever(gateway, admin_token):
    port = gateway()
    agent = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    status, body, response = _post(agent, "not-a-token-anyone-issued", _heartbeat(1))
    assert status == 401 and body["error"] == "not_authenticated", body
    assert response.getheader("WWW-Authenticate") == 'Bearer realm="steward"'


def test_with_the_main_loop_path_off_a_held_thread_holds_the_heartbeats_too(gateway, rpc, admin_token):
    """The other side of the first test: what it shows is the main loop's doing."""
    port = gateway(STEWARD_GATEWAY_HEARTBEATS_ON_MAIN_LOOP="false")
    server_id = _new_server(port, admin_token, f"loop-{next(_seq)}")
    token = agent_token(rpc, server_id)
    agent = http.client.HTTPConnection("127.0.0.1", port, timeout=1.5)
    wait_for(lambda: _post(agent, token, _heartbeat(server_id))[0] == 202, what="a first heartbeat")
    held = _hold_the_thread(port, admin_token)
    try:
        assert _thread_is_held(port)
        with pytest.raises(socket.timeout):
            _post(agent, token, _heartbeat(server_id))
    finally:
        held.close()
