"""The updater in a real container, the real gateway app in front of it, and a small version registry."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from falcon import testing

from gateway.app import create_app
from shared.config import Settings
from tests.events import capture_events


@pytest.fixture(scope="session")
def storage(tmp_path_factory):
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def updater_settings(settings, storage):
    options = dict(settings.section("updater"), storage_dir=str(storage), ssh_timeout_seconds=5)
    return Settings(dict(settings, updater=options))


@pytest.fixture
def updater(start_service, updater_settings, inventory):
    from services.updater.service import UpdaterService

    return start_service(UpdaterService, {"updater": updater_settings["updater"]})


@pytest.fixture(scope="session")
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

    def __init__(self, tokens):
        self.tokens = tokens  # component -> token
        self.images = {}  # (component, version) -> bytes
        self.requests = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                registry.requests.append(self.path)
                parts = self.path.strip("/").split("/")  # v1 components C versions [V image]
                if len(parts) < 4 or parts[:2] != ["v1", "components"] or parts[3] != "versions":
                    return self._send(404, b'{"error": "not found"}')
                component = parts[2]
                if self.headers.get("Authorization") != f"Bearer {registry.tokens.get(component)}":
                    return self._send(401, b'{"error": "bad token"}')
                if len(parts) == 4:
                    import hashlib

                    body = {"versions": [
                        {"version": v, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
                        for (c, v), data in registry.images.items() if c == component
                    ]}
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

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# Lab hosts installed by the real provisioner: what every update test starts from.
from tests.provisioner.conftest import (  # noqa: E402,F401
    provisioner_events, push_install, register, wait_for_task)

FINISHED = ("succeeded", "failed", "rolled_back")


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
