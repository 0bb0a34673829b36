"""Real far ends for the notifier: an SMTP server (aiosmtpd, its own process,
writing a maildir) and an HTTP receiver (stdlib http.server in a thread) that
can go down and come back on the same port; events go out on the real broker."""
import json
import mailbox
import socket
import subprocess
import sys
import threading
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from amqp.exceptions import NotFound
from kombu import Connection
from nameko.standalone.events import event_dispatcher

from shared.events import build_event, event_type
from shared.schemas.notifier import NOTIFIABLE_EVENTS
from tests.waiting import wait_for  # noqa: F401 (the notifier tests import it from here)

# Short windows keep the tests fast; production defaults are in services/notifier/policy.py.
FAST_POLICY = {"digest_window_seconds": 0.5, "poll_seconds": 0.1, "backoff_base_seconds": 0.2,
               "backoff_max_seconds": 1.0, "max_attempts": 4, "flap_window_seconds": 60, "flap_changes": 4}




class SmtpServer:
    """aiosmtpd as its own process; plain, or (``tls=(cert, key, user, password)``) STARTTLS and login required."""

    def __init__(self, directory, tls=None):
        self.port = free_port()
        self.maildir = directory
        if tls:
            argv = [str(Path(__file__).with_name("smtp_tls_server.py")), str(self.port), str(directory), *map(str, tls)]
        else:
            argv = ["-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{self.port}", "-c", "aiosmtpd.handlers.Mailbox",
                    str(directory)]
        self.process = subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._listening, what="the SMTP server")

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def messages(self):
        return list(mailbox.Maildir(self.maildir, create=False))

    def stop(self):
        self.process.terminate()
        self.process.wait(5)


class Receiver:
    """An HTTP endpoint that records every POST; ``stop()`` and ``start()`` keep its port."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.requests = []
        self.server = None
        self.start()

    def start(self):
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"headers": dict(self.headers), "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def json_bodies(self):
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def smtp(tmp_path):
    server = SmtpServer(tmp_path / "maildir")
    yield server
    server.stop()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.stop()


NOTIFIER_QUEUES = [f"evt-{event_type(name).source}-{name}--notifier.handle_{name}" for name in NOTIFIABLE_EVENTS]


def purge_notifier_queues(amqp_uri):
    """Events a previous test left in the durable queues must not leak into this one."""
    with Connection(amqp_uri) as connection:
        for name in NOTIFIER_QUEUES:
            channel = connection.channel()
            try:
                channel.queue_purge(name)
            except NotFound:  # the queue does not exist yet: nothing to purge
                pass
            finally:
                channel.close()


@pytest.fixture
def notifier(settings, start_service):
    from services.notifier.service import NotifierService

    purge_notifier_queues(settings.amqp_uri)
    return start_service(NotifierService, {"notifier": FAST_POLICY, "PUBLIC_URL": "https://steward.example.net"})


@pytest.fixture
def emit(settings):
    """Dispatch a catalog event on the real broker, as its source service would."""
    dispatch = event_dispatcher(settings)

    def emit(name, **payload):
        dispatch(event_type(name).source, name, build_event(name, **payload))

    return emit


def email_channel(rpc, principal, smtp, name="ops-mail", recipients=("ops@example.net",)):
    return rpc.call("notifier", "create_channel", principal, {
        "name": name, "kind": "email",
        "settings": {"host": "127.0.0.1", "port": smtp.port, "starttls": False, "sender": "steward@example.net",
                     "recipients": list(recipients)}})


def webhook_channel(rpc, principal, receiver, name="ops-hook", secret="s3cret-signing-key-0123"):
    return rpc.call("notifier", "create_channel", principal, {
        "name": name, "kind": "webhook", "settings": {"url": receiver.url, "secret": secret}})


def rule(rpc, principal, channels, name="everything", **fields):
    return rpc.call("notifier", "create_rule", principal, dict(
        {"name": name, "channel_ids": [c["id"] for c in channels]}, **fields))


def down(server_id, name=None, previous="up", at=None):
    return dict(server_id=server_id, server_name=name or f"dns-{server_id}", previous_state=previous, state="down",
                last_heartbeat_at="2026-11-24T01:00:00+00:00", occurred_at=at)


def deliveries(rpc, principal, **query):
    return rpc.call("notifier", "list_deliveries", principal, query)


# The real gateway app and, over real HTTP, the CLI (fixtures of the gateway tier).
from tests.gateway.conftest import api_url, app, auth, client  # noqa: E402,F401
from tests.ports import free_port
