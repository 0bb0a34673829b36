"""Push installs against lab hosts, through the real gateway app, provisioner, inventory and broker."""
import threading
import time
from urllib.parse import unquote, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from falcon import testing

from gateway.app import create_app
from gateway.routes import PREFIX
from tests.lab import lab_host
# monitoring-ingest keeps liveness by server id, and ids restart in every test: start each test without it.
from tests.monitoring.conftest import clean_monitoring  # noqa: F401 (an autouse fixture)
from tests.events import capture_events


@pytest.fixture(scope="session")
def gateway_app(settings, rpc):
    return create_app(settings, rpc=rpc)


@pytest.fixture
def api(settings, gateway_app, inventory, provisioner, rabbitmq_management, admin_token):
    client = testing.TestClient(gateway_app, headers={"Authorization": f"Bearer {admin_token}"})
    # Per-server RabbitMQ users are broker-wide: in this run's own vhost they cannot meet another run's.
    vhost = unquote(urlsplit(settings.amqp_uri).path.lstrip("/")) or "/"
    assert client.simulate_patch(f"{PREFIX}/settings", json={"rabbitmq": {"vhost": vhost}}).status_code == 200
    return client


@pytest.fixture
def lab():
    with lab_host() as host:
        yield host


@pytest.fixture
def provisioner_events(settings):
    """Every event the provisioner emits during the test, in order."""
    with capture_events(settings, "provisioner") as drain:
        yield drain


def register(api, host, **fields):
    """A server for a lab host, as an operator registers it (process runtime: no Docker here)."""
    body = {"name": f"lab-{host.tag}", "address": host.address, "os": "ubuntu", "runtime": "process",
            "ssh_password": host.root_password}
    body.update(fields)
    created = api.simulate_post(f"{PREFIX}/servers", json=body)
    assert created.status_code == 201, created.text
    return created.json


def wait_for_task(api, task_id, timeout=180):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = api.simulate_get(f"{PREFIX}/tasks/{task_id}").json
        seen.append(task)
        if task["state"] in ("succeeded", "failed"):
            return task, seen
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish in {timeout} s: {seen[-1]}")


def push_install(api, server_id):
    accepted = api.simulate_post(f"{PREFIX}/servers/{server_id}/actions/push-install")
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["location"] == f"{PREFIX}/tasks/{accepted.json['id']}"
    return accepted.json


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def api_url(gateway_app):
    """The real app over real HTTP, for the CLI."""
    server = make_server("127.0.0.1", 0, gateway_app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
