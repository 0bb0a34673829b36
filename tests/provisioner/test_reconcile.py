"""Reconcile and inspect on the real broker, database and services: what the control plane stores beside what
the fleet reports, through the API and the CLI, and the safe fixes."""
from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit

from sqlalchemy import text

from cli import main as cli
from gateway.routes import PREFIX
from services.provisioner.rabbitmq_users import RabbitMQUsers
from tests.conftest import agent_token
from tests.waiting import wait_for

VERSIONS = {"dns": "3.2.6", "monitor": "1.0.0"}


def test_reconcile_finds_and_fixes_what_disagrees_and_inspect_shows_one_server(
        api, settings, rpc, engine, api_url, admin_token, capsys, monitoring):  # noqa: F811
    created = api.simulate_post(f"{PREFIX}/servers", json={"name": "dns-r", "address": "127.0.0.1", "os": "ubuntu",
                                                          "components": ["dns", "monitor"]})
    server = created.json
    assert api.simulate_get(f"{PREFIX}/servers/{server['id']}/bundle").status_code == 200  # its broker user
    agent = {"Authorization": f"Bearer {agent_token(rpc, server['id'])}"}
    seq = [0]

    def beat():
        """A heartbeat now (monitoring-ingest here calls a server down after 1 s of silence)."""
        seq[0] += 1
        heartbeat = {"v": 1, "kind": "heartbeat", "server_id": server["id"], "seq": seq[0],
                     "collected_at": datetime.now(timezone.utc).isoformat(),
                     "data": {"agent_version": "1.0.0", "versions": VERSIONS}}
        assert api.simulate_post(f"{PREFIX}/monitoring/heartbeat", json=heartbeat, headers=agent).status_code == 202

    def stored_dns():
        shown = api.simulate_get(f"{PREFIX}/servers/{server['id']}").json
        return {c["name"]: c["version"] for c in shown["components"]}["dns"]

    wait_for(lambda: beat() or stored_dns() == "3.2.6", what="the reported versions recorded")
    # The stored version changed behind the reports' back (a restored database, a change by hand).
    with engine.begin() as connection:
        connection.execute(text("UPDATE inventory.server_components SET version = '3.2.5' "
                                "WHERE server_id = :s AND name = 'dns'"), {"s": server["id"]})
    users = RabbitMQUsers("http://127.0.0.1:15672", "guest", "guest",
                          unquote(urlsplit(settings.amqp_uri).path.lstrip("/")) or "/")
    leftover = server["id"] + 1000
    users.ensure_agent_user(leftover)  # a server deleted while the provisioner was away, say

    def mine(findings):
        return {(f["kind"], f["server_id"]) for f in findings if f["server_id"] in (server["id"], leftover)}

    expected = {("stored_version_differs", server["id"]), ("broker_user_without_server", leftover)}
    found = wait_for(lambda: beat() or (r := api.simulate_get(f"{PREFIX}/reconcile").json) and
                     mine(r["findings"]) == expected and r, what="both disagreements found")
    assert found["fixed"] is False and all(f["fixable"] for f in found["findings"])
    differs = next(f for f in found["findings"] if f["kind"] == "stored_version_differs")
    assert "3.2.5" in differs["detail"] and "3.2.6" in differs["detail"]

    seen = wait_for(lambda: beat() or (r := api.simulate_get(f"{PREFIX}/servers/{server['id']}/inspection").json)
                    ["reported"]["state"] == "up" and r, what="an inspection while the server is up")
    assert seen["broker_user_present"] is True and seen["reported"]["versions"] == VERSIONS
    assert seen["reported"]["last_heartbeat_at"] and seen["stored"]["state"] == "running"
    assert [d for d in seen["disagreements"] if "stored running versions" in d], seen["disagreements"]

    steward = ["--url", api_url, f"--token={admin_token}"]
    beat()
    assert cli.main(steward + ["reconcile"]) == 0
    out = capsys.readouterr().out
    assert "broker_user_without_server" in out and "steward reconcile --fix fixes the safe ones" in out

    def inspected():
        # A server stays up for only a second of silence in the tests: beat before each look, as above.
        beat()
        assert cli.main(steward + ["servers", "inspect", server["name"]]) == 0
        return capsys.readouterr().out

    out = wait_for(lambda: (o := inspected()) and "* stored running versions" in o and o,
                   what="the CLI's inspection while the server is up")
    assert "broker user" in out and "present" in out and "3.2.5" in out and "3.2.6" in out
    assert "* stored running versions" in out

    fixed = wait_for(lambda: beat() or (r := api.simulate_post(f"{PREFIX}/reconcile").json) and
                     mine(r["findings"]) == expected and r, what="a fix while the server is up")
    assert fixed["fixed"] is True and all(f["fixed"] for f in fixed["findings"] if f["server_id"] == server["id"])
    assert stored_dns() == "3.2.6" and not users.has_agent_user(leftover) and users.has_agent_user(server["id"])
    beat()
    assert mine(api.simulate_get(f"{PREFIX}/reconcile").json["findings"]) == set()
    seen = api.simulate_get(f"{PREFIX}/servers/{server['id']}/inspection").json
    assert not [d for d in seen["disagreements"] if "stored running versions" in d]
