"""`make up` and its process handling tell the truth: a port another process holds is refused with a clear
message before anything starts; a process killed with -9 and restarted at once is started again, not
"already running"; the gateway counted as up is the one that holds the listening socket."""
import os
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scripts import stack
from tests.stack import ROOT, stack_env as local_stack
from tests.waiting import wait_for


class _AnswersEverything(BaseHTTPRequestHandler):
    """Another program on the port, answering 200 to /healthz as a stack's gateway would."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args):
        pass


@pytest.mark.e2e
def test_make_up_refuses_a_port_another_process_answers_on(tmp_path):
    other = ThreadingHTTPServer(("127.0.0.1", 0), _AnswersEverything)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    port = other.server_address[1]
    try:
        with local_stack("port", tmp_path / "state", STEWARD_BIND=f"127.0.0.1:{port}") as env:
            up = subprocess.run(["make", "-s", "up"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        other.shutdown()
    assert up.returncode != 0, up.stdout
    assert f"127.0.0.1:{port} is in use" in up.stderr and f"pid {os.getpid()}" in up.stderr, up.stderr
    assert "set STEWARD_BIND" in up.stderr
    assert "the stack is up" not in up.stdout and "Admin token" not in up.stdout
    assert not list((tmp_path / "state" / "run").glob("*.pid"))  # nothing was started


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "RUN", tmp_path / "run")
    monkeypatch.setattr(stack, "LOGS", tmp_path / "logs")
    for directory in (stack.RUN, stack.LOGS):
        directory.mkdir()
    started = []
    yield started
    for pid in started:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_process_killed_and_restarted_at_once_is_started_again(state, capsys):
    sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
    first = stack._spawn("sleeper", sleeper)
    state.append(first)
    assert stack._running("sleeper") == first
    os.kill(first, signal.SIGKILL)  # its parent (this test) has not reaped it: a zombie, as after a fast kill -9

    second = stack._spawn("sleeper", sleeper)
    said = capsys.readouterr().out
    assert second and second != first and "already running" not in said, said
    state.append(second)
    assert stack._running("sleeper") == second


def test_the_gateway_counted_as_up_is_the_process_holding_the_listening_socket(state):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = subprocess.Popen([sys.executable, "-c", f"import socket, time; s = socket.create_server(('127.0.0.1', {port}));"
                                 " time.sleep(300)"], start_new_session=True)
    state.append(listener.pid)
    wait_for(lambda: stack.listens_on(listener.pid, port), what="the child listening")
    assert not stack.listens_on(os.getpid(), port)  # another process answering on the port is not ours
    with pytest.raises(stack.StackError, match=rf"127.0.0.1:{port} is in use .*pid {listener.pid}"):
        stack.ensure_port_free(f"127.0.0.1:{port}")
