"""After a push install the agent's heartbeats reach the real gateway and monitoring-ingest:
``requests`` climbs and the list shows the versions the server reports."""
import json
import threading
from wsgiref.simple_server import make_server

import pytest

from gateway.routes import PREFIX
from shared.config import public_url
from tests.provisioner.conftest import (
    _QuietHandler, delete_and_see_it_uninstalled, processes, push_install, register, wait_for_task,
)
from tests.waiting import wait_for


@pytest.fixture
def monitoring_api(gateway_app, lab, settings):
    """The gateway where the lab host reaches it: its end of the veth, on PUBLIC_URL's port."""
    port = int(public_url(settings).rsplit(":", 1)[1])
    server = make_server(lab.host_address, port, gateway_app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield
    server.shutdown()
    server.server_close()


def _row(api, server):
    return api.simulate_get(f"{PREFIX}/servers", params={"search": server["name"]}).json["items"][0]


def test_heartbeats_after_install_make_requests_climb(api, lab, monitoring, monitoring_api):  # noqa: F811
    server = register(api, lab, components=["dns", "monitor"], monitoring_api_ip=lab.host_address)
    finished, _ = wait_for_task(api, push_install(api, server["id"])["id"])
    assert finished["state"] == "succeeded", finished["error"]

    # The first heartbeat goes out as the agent starts.
    first = wait_for(lambda: _row(api, server)["requests"] >= 1 and _row(api, server), timeout=30, interval=0.2)
    assert first["versions"] == {"dns": "3.2.6", "monitor": "1.0.0"}

    # An operator shortens the interval on the server and restarts the heartbeat: requests climb.
    config_path = lab.prefix / "etc" / "steward" / "agent.json"
    config = json.loads(config_path.read_text())
    config["heartbeat_interval_seconds"] = 0.3
    config_path.write_text(json.dumps(config))
    lab.exec("env", f"STEWARD_PREFIX={lab.prefix}", "bash", str(lab.prefix / "opt" / "steward" / "pv_heartbeat.sh"),
             "start")
    climbed = wait_for(lambda: (row := _row(api, server))["requests"] >= first["requests"] + 3 and row, timeout=30,
                       interval=0.2)
    assert climbed["state"] == "running" and climbed["versions"] == first["versions"]


def test_a_manually_installed_server_shows_its_components_and_delete_uninstalls_it(
        api, lab, monitoring, monitoring_api):  # noqa: F811
    """The documented manual install (bundle, install_python3.sh, pv_install.py) leaves no install task:
    the record learns what runs there from the heartbeats, and a delete removes it over SSH all the same."""
    server = register(api, lab, components=["dns", "monitor"], monitoring_api_ip=lab.host_address)
    response = api.simulate_get(f"{PREFIX}/servers/{server['id']}/bundle")
    assert response.status_code == 200, response.text
    home = lab.root / "home" / "root"
    (home / "setup.tar").write_bytes(response.content)
    bundle_dir = home / f"setup-{server['id']}"
    env = f"cd {home} && export STEWARD_PREFIX={lab.prefix} && "
    lab.exec("sh", "-c", env + f"tar -xf setup.tar && bash {bundle_dir}/install_python3.sh")
    done = lab.exec("sh", "-c", env + f"python3 {bundle_dir}/pv_install.py", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert processes(lab, "knotd") == "1"

    def components():
        shown = api.simulate_get(f"{PREFIX}/servers/{server['id']}").json
        return {c["name"]: (c["state"], c["version"]) for c in shown["components"]}, shown

    (seen, shown) = wait_for(lambda: (c := components())[0]["dns"][0] == "running" and c, timeout=60,
                             what="the heartbeats' versions in the server's record")
    assert seen == {"dns": ("running", "3.2.6"), "monitor": ("running", "1.0.0")}
    assert shown["state"] == "running" and shown["agent_last_seen_at"]
    assert _row(api, server)["state"] == "running"
    assert api.simulate_get(f"{PREFIX}/servers", params={"search": server["name"], "state": "running"}).json["total"] == 1

    delete_and_see_it_uninstalled(api, lab, server)
