"""Push installs against lab hosts, through the real gateway app, provisioner, inventory and broker."""
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from falcon import testing

from gateway.app import create_app
from gateway.routes import PREFIX
from shared.config import amqp_vhost
from tests.lab import lab_host
from tests.events import capture_events
from shared.tasks import FINISHED


@pytest.fixture(scope="session")
def gateway_app(settings, rpc):
    return create_app(settings, rpc=rpc)


@pytest.fixture
def api(settings, gateway_app, inventory, provisioner, backup, rabbitmq_management, admin_token):
    client = testing.TestClient(gateway_app, headers={"Authorization": f"Bearer {admin_token}"})
    # Per-server RabbitMQ users are broker-wide: in this run's own vhost, which agents get unless an admin says
    # otherwise, they cannot meet another run's.
    assert client.simulate_get(f"{PREFIX}/settings").json["rabbitmq"]["vhost"] == amqp_vhost(settings.amqp_uri)
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
        if task["state"] in FINISHED:
            return task, seen
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish in {timeout} s: {seen[-1]}")


def push_install(api, server_id):
    accepted = api.simulate_post(f"{PREFIX}/servers/{server_id}/actions/push-install")
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["location"] == f"{PREFIX}/tasks/{accepted.json['id']}"
    return accepted.json


def processes(host, name):
    """How many processes called ``name`` run on the lab host (as text)."""
    return host.exec("sh", "-c", f"ip netns pids {host.namespace} | xargs -r ps -o comm= -p | grep -c '^{name}$'",
                     check=False).stdout.strip()


def delete_and_see_it_uninstalled(api, host, server):
    """DELETE the server: 200, everything removed from the lab host, nothing left to say."""
    deleted = api.simulate_delete(f"{PREFIX}/servers/{server['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json["cleanup"] == {"server_id": server["id"], "uninstalled": True, "rabbitmq_user_removed": True,
                                       "problems": []}
    assert processes(host, "knotd") == "0"
    assert not (host.prefix / "opt" / "steward").exists()


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
