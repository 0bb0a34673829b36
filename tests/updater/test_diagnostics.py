"""Diagnostics on a lab host, as a task: every check passes on a healthy server; with the broker unreachable
for that server only, the RabbitMQ check fails with a clear message and the others still pass. Each
check is a step of the task's log, and the runs are listed per server as tasks of kind diagnostics."""
import json

from gateway.routes import PREFIX
from tests.forwarder import Forwarder
from tests.lab import lab_host
from tests.updater.conftest import install, wait_for_task


def _checks(run):
    return {c["name"]: (c["status"], c["message"]) for c in run["checks"]}


def _diagnose(api, server_id):
    """Start a run (202: a task), wait for its end; the run with its checks."""
    started = api.simulate_post(f"{PREFIX}/servers/{server_id}/actions/diagnostics")
    assert started.status_code == 202, started.text
    assert started.headers["location"] == f"{PREFIX}/tasks/{started.json['id']}"
    assert started.json["kind"] == "diagnostics" and started.json["state"] == "queued"
    wait_for_task(api, started.json["id"], timeout=120)
    return api.simulate_get(f"{PREFIX}/servers/{server_id}/diagnostics/{started.json['id']}").json


def test_diagnostics_pass_then_report_the_unreachable_broker(lab_api, monitoring_answers_or_is_absent):
    api = lab_api
    with lab_host() as host:
        server, = install(api, [host])
        # From inside the lab host the control plane is at the veth's far end, not at the settings' 127.0.0.1:
        # point the agent there by hand (tests/provisioner/test_agent_broker.py does it with the setting).
        config_path = host.prefix / "etc" / "steward" / "agent.json"
        agent_config = json.loads(config_path.read_text())
        agent_config["rabbitmq"]["host"] = host.host_address
        config_path.write_text(json.dumps(agent_config))
        # The machine's RabbitMQ listens on loopback only: this carries the lab host's AMQP to it.
        forwarder = Forwarder(("127.0.0.1", 5672), address=host.host_address, port=5672)
        try:
            healthy = _diagnose(api, server["id"])
            assert healthy["state"] == "succeeded", healthy
            checks = _checks(healthy)
            assert {name: status for name, (status, _) in checks.items() if name != "heartbeat"} == {
                "ssh": "passed", "runtime": "passed", "monitor": "passed", "rabbitmq": "passed", "disk": "passed"}
            assert "accepts the agent's credentials" in checks["rabbitmq"][1]
            # monitoring-ingest does not run here: the check says so instead of guessing.
            assert checks["heartbeat"][0] == "unknown" and "monitoring-ingest did not answer" in checks["heartbeat"][1]
        finally:
            forwarder.cut()

        # The broker is now unreachable for this server only (nothing listens where its agent points).
        broken = _diagnose(api, server["id"])
        checks = _checks(broken)
        assert broken["state"] == "failed" and broken["error"] == "failed checks: rabbitmq"
        assert checks["rabbitmq"][0] == "failed" and "cannot reach RabbitMQ at " + host.host_address in checks["rabbitmq"][1]
        assert all(checks[name][0] == "passed" for name in ("ssh", "runtime", "monitor", "disk"))

        runs = api.simulate_get(f"{PREFIX}/servers/{server['id']}/diagnostics").json
        assert [(r["id"], r["state"]) for r in runs] == [(broken["id"], "failed"), (healthy["id"], "succeeded")]
        listed = api.simulate_get(f"{PREFIX}/tasks", params={"kind": "diagnostics", "server_id": server["id"]}).json
        assert [t["id"] for t in listed["items"]] == [broken["id"], healthy["id"]]
        # One step per check, in the order they ran, each ended with its result.
        steps = api.simulate_get(f"{PREFIX}/tasks/{broken['id']}/log").json["steps"]
        assert [(s["name"], s["state"]) for s in steps] == [
            ("ssh", "succeeded"), ("runtime", "succeeded"), ("monitor", "succeeded"), ("rabbitmq", "failed"),
            ("disk", "succeeded"), ("heartbeat", "succeeded")]
        kept = api.simulate_get(f"{PREFIX}/servers/{server['id']}/diagnostics/{broken['id']}")
        assert kept.status_code == 200 and kept.json["checks"] == broken["checks"]
        log = api.simulate_get(f"{PREFIX}/servers/{server['id']}/diagnostics/{broken['id']}/log")
        assert log.status_code == 200 and log.headers["content-disposition"].startswith("attachment")
        assert "[failed] rabbitmq: cannot reach RabbitMQ" in log.text and "[passed] runtime" in log.text
        assert agent_config["rabbitmq"]["password"] not in log.text + json.dumps(broken) + json.dumps(steps)
        assert host.root_password not in log.text

        other = api.simulate_get(f"{PREFIX}/servers/{server['id']}/diagnostics/{'0' * 32}")
        assert other.status_code == 404 and other.json["error"] == "diagnostics_not_found"
