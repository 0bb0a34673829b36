"""The updater in a real container, the real gateway app in front of it, and a small version registry."""
import hashlib
import json
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from amqp.exceptions import NotFound
from falcon import testing
from kombu import Connection

from cli.main import main
from gateway.app import create_app
from shared.config import Settings
from tests.events import capture_events


@pytest.fixture
def storage(tmp_path):
    """Each test's own image storage: what one test stored is not in the next one's counts."""
    return tmp_path / "images"


@pytest.fixture
def updater_settings(settings, storage):
    options = dict(settings.section("updater"), storage_dir=str(storage), ssh_timeout_seconds=5)
    return Settings(dict(settings, updater=options))


@pytest.fixture
def updater(start_service, updater_settings, inventory):
    from services.updater.service import UpdaterService

    return start_service(UpdaterService, {"updater": updater_settings["updater"]})


@pytest.fixture
def updater_app(updater_settings, rpc):
    return create_app(updater_settings, rpc=rpc)


@pytest.fixture
def api(updater_app, updater, provisioner, admin_token):
    return testing.TestClient(updater_app, headers={"Authorization": f"Bearer {admin_token}"})


@pytest.fixture
def updater_events(settings):
    """Every event the updater emits during the test, in order."""
    with capture_events(settings, "updater") as drain:
        yield drain


class Registry:
    """A version registry on loopback: the two endpoints services/updater/registry.py speaks, with token auth."""

    def __init__(self, tokens=None):
        self.tokens = tokens  # component -> token; None: anyone may read
        self.images = {}  # (component, version) -> bytes
        self.sha256 = {}  # (component, version) -> what the list says instead of the image's sha256 (None: nothing)
        self.requests = []
        self.request_headers = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                registry.requests.append(self.path)
                registry.request_headers.append(dict(self.headers))
                parts = self.path.strip("/").split("/")  # v1 components C versions [V image]
                if len(parts) < 4 or parts[:2] != ["v1", "components"] or parts[3] != "versions":
                    return self._send(404, b'{"error": "not found"}')
                component = parts[2]
                if registry.tokens is not None and \
                        self.headers.get("Authorization") != f"Bearer {registry.tokens.get(component)}":
                    return self._send(401, b'{"error": "bad token"}')
                if len(parts) == 4:
                    body = {"versions": [registry.offer(c, v, data) for (c, v), data in registry.images.items()
                                         if c == component]}
                    return self._send(200, json.dumps(body).encode())
                data = registry.images.get((component, parts[4]))
                if data is None or parts[5:] != ["image"]:
                    return self._send(404, b'{"error": "no such version"}')
                return self._send(200, data, "application/gzip")

            def _send(self, status, body, content_type="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def offer(self, component, version, data):
        """One entry of the version list, with the image's sha256 unless the test says otherwise."""
        offered = {"version": version, "size_bytes": len(data),
                   "sha256": self.sha256.get((component, version), hashlib.sha256(data).hexdigest())}
        return {k: v for k, v in offered.items() if v is not None}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# Lab hosts installed by the real provisioner: what every update test starts from.
from tests.provisioner.conftest import (  # noqa: E402,F401
    provisioner_events, push_install, register, wait_for_task)

@pytest.fixture
def monitoring_answers_or_is_absent(settings):
    """monitoring-ingest either runs (an earlier module started it) or has no request queue at all: a queue
    left with nobody consuming it would hold the updater's call to it for ever (its RpcProxy has no timeout)."""
    with Connection(settings.amqp_uri) as connection:
        channel = connection.default_channel
        try:
            if channel.queue_declare("rpc-monitoring_ingest", passive=True).consumer_count == 0:
                channel.queue_delete("rpc-monitoring_ingest")
        except NotFound:
            pass


from shared.tasks import FINISHED  # noqa: E402,F401


@pytest.fixture
def lab_api(api, provisioner, rabbitmq_management, provisioner_events, rpc, admin):  # noqa: F811
    """The API with the provisioner too, in local update mode (images uploaded by the operator).

    (provisioner_events declares the provisioner's event exchange, which its standalone dispatcher needs.)"""
    rpc.call("inventory", "update_settings", admin, {"update": {"mode": "local"}})
    return api


def install(api, hosts):
    """Register and push-install lab hosts (in parallel, as an operator would); returns their servers."""
    servers = [register(api, host) for host in hosts]
    tasks = [push_install(api, server["id"]) for server in servers]
    for task in tasks:
        finished, _ = wait_for_task(api, task["id"], timeout=300)
        assert finished["state"] == "succeeded", finished["error"]
    return servers


def wait_for_update(api, task_id, timeout=120):
    import time

    from gateway.routes import PREFIX

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = api.simulate_get(f"{PREFIX}/update-tasks/{task_id}").json
        if task["state"] in FINISHED:
            return task
        time.sleep(0.2)
    raise AssertionError(f"update task {task_id} did not finish in {timeout} s: {task}")


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def steward(updater_app, updater, provisioner, admin_token, capsys, rpc, admin):
    rpc.call("inventory", "update_settings", admin, {"update": {"mode": "local"}})
    server = make_server("127.0.0.1", 0, updater_app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def run(*argv):
        code = main(["--url", f"http://127.0.0.1:{server.server_port}", "--token", admin_token, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    server.shutdown()
    server.server_close()
