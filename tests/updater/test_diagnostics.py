"""Diagnostics on a lab host: every check passes on a healthy server; with the broker unreachable
for that server only, the RabbitMQ check fails with a clear message and the others still pass."""
import json
import socket
import threading

from gateway.routes import PREFIX
from tests.lab import lab_host
from tests.updater.conftest import install


class Forwarder:
    """The machine's RabbitMQ listens on loopback only; this carries the lab host's AMQP to it."""

    def __init__(self, address, port=5672, target=("127.0.0.1", 5672)):
        self.target = target
        self.listener = socket.create_server((address, port))
        self.open = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()
        for s in self.open:
            s.close()


def _checks(run):
    return {c["name"]: (c["status"], c["message"]) for c in run["checks"]}


def test_diagnostics_pass_then_report_the_unreachable_broker(lab_api):
    api = lab_api
    with lab_host() as host:
        server, = install(api, [host])
        # From inside the lab host the control plane is at the veth's far end, not at the settings' 127.0.0.1
        # (which the provisioner needs for the management API): point the agent there, as an operator would.
        config_path = host.prefix / "etc" / "steward" / "agent.json"
        agent_config = json.loads(config_path.read_text())
        agent_config["rabbitmq"]["host"] = host.host_address
        config_path.write_text(json.dumps(agent_config))
        forwarder = Forwarder(host.host_address)
        try:
            healthy = api.simulate_post(f"{PREFIX}/servers/{server['id']}/actions/diagnostics")
            assert healthy.status_code == 201, healthy.text
            checks = _checks(healthy.json)
            assert {name: status for name, (status, _) in checks.items() if name != "heartbeat"} == {
                "ssh": "passed", "runtime": "passed", "monitor": "passed", "rabbitmq": "passed", "disk": "passed"}
            assert "accepts the agent's credentials" in checks["rabbitmq"][1]
            # monitoring-ingest does not run here: the check says so instead of guessing.
            assert checks["heartbeat"][0] == "unknown" and "monitoring-ingest did not answer" in checks["heartbeat"][1]
        finally:
            forwarder.close()

        # The broker is now unreachable for this server only (nothing listens where its agent points).
        broken = api.simulate_post(f"{PREFIX}/servers/{server['id']}/actions/diagnostics").json
        checks = _checks(broken)
        assert broken["state"] == "failed"
        assert checks["rabbitmq"][0] == "failed" and "cannot reach RabbitMQ at " + host.host_address in checks["rabbitmq"][1]
        assert all(checks[name][0] == "passed" for name in ("ssh", "runtime", "monitor", "disk"))

        kept = api.simulate_get(f"{PREFIX}/servers/{server['id']}/diagnostics/{broken['id']}")
        assert kept.status_code == 200 and kept.json["checks"] == broken["checks"]
        log = api.simulate_get(f"{PREFIX}/servers/{server['id']}/diagnostics/{broken['id']}/log")
        assert log.status_code == 200 and log.headers["content-disposition"].startswith("attachment")
        assert "[failed] rabbitmq: cannot reach RabbitMQ" in log.text and "[passed] runtime" in log.text
        assert agent_config["rabbitmq"]["password"] not in log.text + json.dumps(broken)
        assert host.root_password not in log.text

        other = api.simulate_get(f"{PREFIX}/servers/{server['id']}/diagnostics/{'0' * 32}")
        assert other.status_code == 404 and other.json["error"] == "diagnostics_not_found"
