"""The gateway under gunicorn with its own worker (gateway/worker.py): slow clients hold no thread, what
gunicorn itself answers is JSON and names no software, and a gateway that is stopping resets no connection."""
import json
import os
import signal
import socket
import time
import urllib.request

import pytest

from tests.conftest import TEST_DB, TEST_VHOST
from tests.gateway.served import served_gateway
from tests.waiting import wait_for

HEAD_TIMEOUT = 3
SLOW_CLIENTS = 50


@pytest.fixture
def gateway(settings, tmp_path):
    """gunicorn as `make up` runs it, with one worker of two threads, so two held threads would stop it."""
    env = dict(os.environ, STEWARD_DB_NAME=TEST_DB, STEWARD_AMQP_VHOST=TEST_VHOST,
               STEWARD_SECRET_KEY="test-secret-key", STEWARD_UPDATER_STORAGE=str(tmp_path / "images"),
               STEWARD_GATEWAY_WORKERS="1", STEWARD_GATEWAY_THREADS="2",
               STEWARD_GATEWAY_HEAD_TIMEOUT=str(HEAD_TIMEOUT))
    with served_gateway(env, tmp_path / "gunicorn.log") as gateway:
        yield gateway


def _still_waiting(sock):
    """True while the gateway has neither answered nor closed ``sock``."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)  # an answer, or b"" for a closed connection
        return False
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


def _answer(sock):
    sock.settimeout(HEAD_TIMEOUT * 10)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def test_fifty_slow_clients_do_not_stop_a_normal_request_and_are_answered_408(gateway):
    slow = []
    for n in range(SLOW_CLIENTS):
        sock = socket.create_connection(("127.0.0.1", gateway.port))
        # Half a head; or a whole head whose body never comes.
        sock.sendall(b"GET /api/v2/openapi.json HTTP/1.1\r\nHost: steward\r\n" if n % 2 else
                     b"POST /api/v2/tokens HTTP/1.1\r\nHost: steward\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"name\"")
        slow.append(sock)
    started = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/api/v2/openapi.json", timeout=HEAD_TIMEOUT * 10) as normal:
        assert normal.status == 200 and json.load(normal)["openapi"].startswith("3.")
    normal_ms = (time.perf_counter() - started) * 1000
    waiting = sum(_still_waiting(sock) for sock in slow)
    assert waiting == SLOW_CLIENTS, "the normal request was answered only after slow clients were let go"

    started = time.perf_counter()
    for sock in slow:
        head, body = _answer(sock)
        assert head.startswith("HTTP/1.1 408"), head
        assert json.loads(body)["error"] == "request_timeout"
        sock.close()
    print(f"slow clients: {SLOW_CLIENTS} held open (1 worker, 2 threads); a normal request answered in "
          f"{normal_ms:.1f} ms while all {waiting} still waited; all answered 408 within "
          f"{time.perf_counter() - started + HEAD_TIMEOUT:.1f} s of connecting (head timeout {HEAD_TIMEOUT} s)")


def test_what_gunicorn_itself_answers_is_json_and_names_no_software(gateway):
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/api/v2/openapi.json", timeout=10) as normal:
        assert "gunicorn" not in (normal.headers.get("Server") or "").lower()
    for request, status in ((b"NOT-HTTP\r\n\r\n", 400),
                            (b"GET /api/v2/openapi.json HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
                            (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n", 414)):
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(request)
            head, body = _answer(sock)
        assert head.startswith(f"HTTP/1.1 {status}"), head
        assert "content-type: application/json" in head.lower() and "gunicorn" not in head.lower()
        error = json.loads(body)
        assert set(error) == {"error", "message", "details"} and error["message"]


def test_a_stopping_gateway_answers_every_connection_it_took_and_refuses_the_next(gateway):
    """SIGTERM while a request is in flight: connections made until the listener closes are answered (none reset,
    which a proxy could not safely retry), the next connection is refused (which it can), the in-flight request
    finishes, and gunicorn exits 0."""
    request = b"GET /api/v2/openapi.json HTTP/1.1\r\nHost: steward\r\nConnection: close\r\n\r\n"
    in_flight = socket.create_connection(("127.0.0.1", gateway.port))
    in_flight.sendall(request[:-2])  # all but the head's last line: the worker waits for it
    gateway.process.send_signal(signal.SIGTERM)
    taken, reset_at_close = [], []

    def refused():
        try:
            sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
        except ConnectionRefusedError:
            return True
        try:
            sock.sendall(request)
        except (ConnectionResetError, BrokenPipeError):
            # Queued in the instant between the worker's last accept and its close of the listener: the
            # kernel resets what is left in the accept queue. Seen once in CI on an idle machine; the
            # listener is closed from here on.
            reset_at_close.append(sock)
            sock.close()
            return True
        taken.append(sock)
        return False

    signalled = time.monotonic()
    wait_for(refused, timeout=30, interval=0.01, what="the stopping gateway to refuse connections")
    refused_after = time.monotonic() - signalled
    in_flight.sendall(request[-2:])
    answers = []
    for sock in [in_flight, *taken]:
        try:
            answers.append(_answer(sock)[0].split("\r\n")[0])
        except ConnectionResetError:
            answers.append("reset")
        sock.close()
    assert gateway.process.wait(timeout=30) == 0
    print(f"stopping gateway: {len(taken)} connections made after SIGTERM before it refused in {refused_after:.1f} s, "
          f"({len(reset_at_close)} reset as the listener closed); answers {answers}")
    assert len(reset_at_close) <= 1
    # The in-flight request is answered 200, or 408 on a machine so loaded that its head timeout passed first.
    assert answers[0] in ("HTTP/1.1 200 OK", "HTTP/1.1 408 Request Timeout") and answers[1:] == ["HTTP/1.1 200 OK"] * len(taken)


def test_clients_that_keep_their_end_open_after_a_closing_answer_hold_up_no_one(gateway):
    """An answer with ``Connection: close`` ends with a lingering close: FIN, then what the client still sends is
    read until it closes. gthread did that wait on the worker's main loop, up to 2 s per connection, so ten
    clients that kept their end open stopped the worker for 20 s (seen as a stopping gateway that never got
    to its last request). Here the poller does it, and the next client is answered at once."""
    lingering = []
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", gateway.port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: steward\r\nConnection: close\r\n\r\n")
        lingering.append(sock)
    for sock in lingering:  # each is answered; the gateway then closes it, and the client keeps its end open
        sock.settimeout(HEAD_TIMEOUT * 10)
        assert sock.recv(1, socket.MSG_PEEK) == b"H"
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/api/v2/openapi.json", timeout=5) as normal:
        assert normal.status == 200
    for sock in lingering:  # each was answered, and closed on the gateway's side
        head, _ = _answer(sock)
        assert head.startswith("HTTP/1.1 200 OK"), head
        sock.close()
