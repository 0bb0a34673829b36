"""Fleet rollouts: waves, a pause at the first failure that leaves the rest untouched, resume, cancel."""
import time

from agent.provision import pv_probes as probes
from gateway.routes import PREFIX
from tests.lab import lab_hosts
from tests.updater.conftest import install
from tests.updater.images import dns_image

GZIP = {"Content-Type": "application/gzip"}


def wait_for_rollout(api, rollout_id, timeout=180):
    """Until the rollout stopped and its hosts did too: a rollout pauses as soon as one host of a
    wave fails, while the others of that wave finish their update."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.simulate_get(f"{PREFIX}/rollouts/{rollout_id}")
        assert response.status_code == 200, response.text
        rollout = response.json
        if rollout["state"] != "running" and not any(s["state"] in ("queued", "running") for s in rollout["servers"]):
            return rollout
        time.sleep(0.2)
    raise AssertionError(f"rollout {rollout_id} still running after {timeout} s: {rollout}")


def _dns_versions(api, servers):
    rows = {r["id"]: r for r in api.simulate_get(f"{PREFIX}/servers", params={"per_page": 100}).json["items"]}
    return [rows[s["id"]]["versions"].get("dns") for s in servers]


def test_a_rollout_pauses_after_the_host_that_failed_and_leaves_the_rest_untouched(lab_api):
    api = lab_api
    with lab_hosts(6) as hosts:
        servers = install(api, hosts)
        assert api.simulate_post(f"{PREFIX}/versions", body=dns_image("3.3"), headers=GZIP).status_code == 201
        # Host 3 cannot take the release: something sits where its files must go, so its install breaks.
        in_the_way = hosts[2].prefix / "provision" / "versions" / "dns" / "3.3"
        in_the_way.parent.mkdir(parents=True, exist_ok=True)
        in_the_way.write_text("not a release\n")

        started = time.monotonic()
        created = api.simulate_post(f"{PREFIX}/rollouts", json={
            "server_ids": [s["id"] for s in servers], "component": "dns", "canary_size": 1, "batch_size": 2})
        assert created.status_code == 201, created.text
        assert [s["wave"] for s in created.json["servers"]] == [0, 1, 1, 2, 2, 3]
        paused = wait_for_rollout(api, created.json["id"])

        assert paused["state"] == "paused" and "lab-" + hosts[2].tag in paused["paused_reason"]
        assert [s["state"] for s in paused["servers"]] == [
            "succeeded", "succeeded", "rolled_back", "pending", "pending", "pending"]
        assert "install dns 3.3 failed" in paused["servers"][2]["message"]
        assert _dns_versions(api, servers) == ["3.3", "3.3", "3.2.6", "3.2.6", "3.2.6", "3.2.6"]
        for server in servers[3:]:  # untouched: not a single update task
            assert api.simulate_get(f"{PREFIX}/servers/{server['id']}/update-tasks").json == []
        for host in hosts:
            assert probes.probe_dns(host.address).startswith("pvverify.test TXT PVOK")

        resumed = api.simulate_post(f"{PREFIX}/rollouts/{created.json['id']}/actions/resume")
        assert resumed.status_code == 200 and resumed.json["state"] == "running"
        done = wait_for_rollout(api, created.json["id"])
        elapsed = time.monotonic() - started
        assert done["state"] == "succeeded", done
        assert _dns_versions(api, servers) == ["3.3", "3.3", "3.2.6", "3.3", "3.3", "3.3"]
        print(f"\n6-host rollout (canary 1, batches of 2, paused once and resumed): {elapsed:.2f} s")


def test_cancel_a_paused_rollout_leaves_the_waiting_servers_alone(api, rpc, admin):
    # Servers whose SSH port is closed: the canary fails at once and the rollout pauses.
    servers = [rpc.call("inventory", "create_server", admin, {
        "name": f"closed-{i}", "address": "127.0.0.1", "ssh_port": 1, "os": "ubuntu", "ssh_password": "x",
        "runtime": "process"}) for i in range(3)]
    created = api.simulate_post(f"{PREFIX}/rollouts", json={"search": "closed-", "batch_size": 1})
    assert created.status_code == 201, created.text
    assert [s["server_name"] for s in created.json["servers"]] == ["closed-0", "closed-1", "closed-2"]
    paused = wait_for_rollout(api, created.json["id"], timeout=60)
    assert paused["state"] == "paused"
    assert [s["state"] for s in paused["servers"]] == ["failed", "pending", "pending"]
    assert "cannot reach the server" in paused["servers"][0]["message"]

    cancelled = api.simulate_post(f"{PREFIX}/rollouts/{created.json['id']}/actions/cancel").json
    assert cancelled["state"] == "cancelled"
    assert [s["state"] for s in cancelled["servers"]] == ["failed", "cancelled", "cancelled"]
    again = api.simulate_post(f"{PREFIX}/rollouts/{created.json['id']}/actions/resume")
    assert again.status_code == 409 and again.json["error"] == "conflict"
    assert [r["id"] for r in api.simulate_get(f"{PREFIX}/rollouts").json] == [created.json["id"]]
    for server in servers[1:]:
        assert api.simulate_get(f"{PREFIX}/servers/{server['id']}/update-tasks").json == []


def test_bad_rollout_requests_are_clear_400s(api):
    for body, field in (({}, "_schema"), ({"server_ids": [1], "search": "x"}, "_schema"),
                        ({"all_running": True, "version": "2"}, "version"),
                        ({"all_running": True, "batch_size": 0}, "batch_size")):
        refused = api.simulate_post(f"{PREFIX}/rollouts", json=body)
        assert refused.status_code == 400 and field in refused.json["details"], (body, refused.json)
    nobody = api.simulate_post(f"{PREFIX}/rollouts", json={"all_running": True})
    assert nobody.status_code == 409 and "no servers" in nobody.json["message"]
    assert api.simulate_get(f"{PREFIX}/rollouts/999").status_code == 404
