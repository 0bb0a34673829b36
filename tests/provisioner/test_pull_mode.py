"""Pull mode switched on for real: the global default or a server's own choice makes its bundle's agent serve
its statistics, monitoring-ingest polls them with the agent token, and they are stored, from a lab host whose
firewall forbids it to reach the broker."""
import json

from sqlalchemy import text

from agent.provision import pv_probes as probes
from gateway.routes import PREFIX
from shared.crypto import SecretBox
from tests.provisioner.conftest import push_install, register, wait_for_task
from tests.provisioner.test_cleanup import bundle_config, new_server
from tests.waiting import wait_for

BROKER_PORTS = ("5671", "5672", "15672")


def _target(engine, server_id):
    with engine.connect() as connection:
        return connection.execute(text("SELECT address, token_sealed, interval_seconds FROM monitoring.pull_targets "
                                       "WHERE server_id = :s"), {"s": server_id}).first()


def test_the_global_default_pull_registers_each_bundle_with_monitoring_and_push_or_delete_unregisters(
        api, monitoring, engine):  # noqa: F811
    changed = api.simulate_patch(f"{PREFIX}/settings", json={"monitoring": {
        "communication_type": "pull", "system_interval_seconds": 30, "dns_interval_seconds": 20}})
    assert changed.status_code == 200, changed.text
    server_id = new_server(api, "pulled-1")
    config = bundle_config(api, server_id)
    assert config["communication_type"] == "pull"
    address, sealed, interval = _target(engine, server_id)
    assert (address, interval) == ("127.0.0.1", 20)
    assert config["agent_token"] not in sealed and SecretBox("test-secret-key").open(sealed) == config["agent_token"]

    # A server's own choice wins over the default; its next bundle unregisters it.
    pushed = api.simulate_patch(f"{PREFIX}/servers/{server_id}", json={"communication_type": "push"})
    assert pushed.status_code == 200 and pushed.json["communication_type"] == "push"
    assert bundle_config(api, server_id)["communication_type"] == "push"
    assert _target(engine, server_id) is None

    again = api.simulate_patch(f"{PREFIX}/servers/{server_id}", json={"communication_type": None})
    assert again.status_code == 200 and again.json["communication_type"] is None
    bundle_config(api, server_id)
    moved = api.simulate_patch(f"{PREFIX}/servers/{server_id}", json={"address": "127.0.0.9"})
    assert moved.status_code == 200
    wait_for(lambda: _target(engine, server_id)[0] == "127.0.0.9", what="the pull target follows the address")
    assert api.simulate_delete(f"{PREFIX}/servers/{server_id}").status_code == 204
    wait_for(lambda: _target(engine, server_id) is None, what="the pull target removed with the server")


def _dns_total(api, server_id):
    return api.simulate_get(f"{PREFIX}/monitoring/servers/{server_id}/dns").json["total"]


def test_a_pull_mode_server_that_cannot_reach_the_broker_is_polled_and_its_statistics_stored(
        api, lab, monitoring):  # noqa: F811
    for port in BROKER_PORTS:
        lab.exec("iptables", "-A", "OUTPUT", "-p", "tcp", "--dport", port, "-j", "REJECT")
    reach = lab.exec("python3", "-c", f"import socket; socket.create_connection(('{lab.host_address}', 5672), 3)",
                     check=False)
    assert reach.returncode != 0, "the lab host reaches the broker port"
    assert api.simulate_patch(f"{PREFIX}/settings", json={"monitoring": {
        "system_interval_seconds": 5, "dns_interval_seconds": 5}}).status_code == 200

    server = register(api, lab, components=["dns", "monitor"], communication_type="pull")
    assert server["communication_type"] == "pull"
    finished, _ = wait_for_task(api, push_install(api, server["id"])["id"])
    assert finished["state"] == "succeeded", finished["error"]
    config = json.loads((lab.prefix / "etc" / "steward" / "agent.json").read_text())
    assert config["communication_type"] == "pull"

    system = wait_for(lambda: api.simulate_get(f"{PREFIX}/monitoring/servers/{server['id']}/system").json["points"],
                      timeout=90, interval=1, what="system statistics pulled from the lab host")
    assert system[0]["samples"] >= 1 and system[0]["memory_total_bytes"] > 0

    def answered_and_counted():
        probes.probe_dns(lab.address)
        return _dns_total(api, server["id"]) >= 1

    wait_for(answered_and_counted, timeout=90, interval=1, what="DNS queries pulled from the lab host and counted")


def _asked(api, server_id):
    items = api.simulate_get(f"{PREFIX}/monitoring/servers/{server_id}/records").json["items"]
    return {(item["name"].rstrip(".").lower(), item["type"]) for item in items}


def test_the_very_first_queries_after_an_install_are_counted(api, lab, monitoring):  # noqa: F811
    """The install's own verification query is the first knotd answers: it must be among the counted ones, and
    so must a query sent the moment the install ends (knotd's dnstap writer used to connect seconds later)."""
    assert api.simulate_patch(f"{PREFIX}/settings", json={"monitoring": {
        "system_interval_seconds": 5, "dns_interval_seconds": 5}}).status_code == 200
    server = register(api, lab, components=["dns", "monitor"], communication_type="pull")
    finished, _ = wait_for_task(api, push_install(api, server["id"])["id"])
    assert finished["state"] == "succeeded", finished["error"]
    probes.probe_dns(lab.address)  # the first query after the install
    wait_for(lambda: ("pvverify.test", "TXT") in _asked(api, server["id"]), timeout=60, interval=1,
             what="queries pulled and counted")
    log = {s["name"]: s for s in api.simulate_get(f"{PREFIX}/tasks/{finished['id']}/log").json["steps"]}
    assert "writer is connected" in log["start_dns"]["output"]
    series = wait_for(lambda: (total := _dns_total(api, server["id"])) >= 2 and total, timeout=60, interval=1,
                      what="the install's verification query and the first query after it, both counted")
    assert series >= 2
