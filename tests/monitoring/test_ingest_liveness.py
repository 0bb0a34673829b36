"""Heartbeats through the gateway, liveness transitions and the fleet list (down after 1 s in these tests)."""
import time

import pytest

from services.monitoring_ingest.service import MonitoringIngestService

from .conftest import SERVICE_CONFIG
from .helpers import message, wait_for


def _agent(rpc, server_id):
    return {"Authorization": f"Bearer {rpc.call('inventory', 'issue_agent_token', server_id)['token']}"}


def _states(events):
    return [(p["server_id"], p["previous_state"], p["state"]) for name, p in events if name == "server_state_changed"]


def test_a_silent_server_goes_down_once_and_up_again(rpc, server, api, start_service, monitoring, monitoring_events,
                                                     scalar):
    start_service(MonitoringIngestService, SERVICE_CONFIG)  # a second replica sweeps too
    headers = _agent(rpc, server["id"])

    answer = api.simulate_post("/api/v2/monitoring/heartbeat", json=message("heartbeat", server["id"], 1),
                               headers=headers)
    assert answer.status_code == 202 and answer.json == {"accepted": True, "server_id": server["id"], "seq": 1}
    wait_for(lambda: scalar("SELECT state FROM monitoring.liveness WHERE server_id = :s", s=server["id"]) == "up")
    wait_for(lambda: scalar("SELECT state FROM monitoring.liveness WHERE server_id = :s", s=server["id"]) == "down",
             timeout=5)
    api.simulate_post("/api/v2/monitoring/heartbeat", json=message("heartbeat", server["id"], 2), headers=headers)
    received = []
    wait_for(lambda: received.extend(monitoring_events()) or len(_states(received)) >= 3)
    time.sleep(1.5)  # long enough for a duplicate (or another down) to show up
    received += monitoring_events()
    assert _states(received)[:3] == [(server["id"], "unknown", "up"), (server["id"], "up", "down"),  # noqa
                                     (server["id"], "down", "up")], [(p["occurred_at"], p["previous_state"], p["state"], p["last_heartbeat_at"]) for _, p in received]
    names = {p["server_name"] for name, p in received}
    assert names == {server["name"]}
    assert len(_states(received)) in (3, 4)  # the last "up" may already have gone down again (1 s)
    if len(_states(received)) == 4:
        assert _states(received)[3] == (server["id"], "up", "down")


def test_the_fleet_list_shows_liveness_requests_and_versions(rpc, admin_token, server, api, monitoring, scalar):
    headers = _agent(rpc, server["id"])
    for seq in range(1, 5):
        heartbeat = message("heartbeat", server["id"], seq, versions={"dns": "3.2.6", "dhcp": "2.2.0"})
        assert api.simulate_post("/api/v2/monitoring/heartbeat", json=heartbeat, headers=headers).status_code == 202
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.heartbeats WHERE server_id = :s", s=server["id"]) == 4)

    rows = api.simulate_get("/api/v2/servers", headers={"Authorization": f"Bearer {admin_token}"}).json["items"]
    row = next(r for r in rows if r["id"] == server["id"])
    assert row["requests"] == 4 and row["requests_status"] == "green"
    assert row["versions"] == {"dns": "3.2.6", "dhcp": "2.2.0"} and row["state"] == "running"
    shown = api.simulate_get(f"/api/v2/servers/{server['id']}", headers={"Authorization": f"Bearer {admin_token}"}).json
    assert (shown["requests"], shown["requests_status"], shown["state"]) == (4, "green", "running")

    detail = api.simulate_get(f"/api/v2/monitoring/servers/{server['id']}/heartbeats", params={"limit": "2"},
                              headers={"Authorization": f"Bearer {admin_token}"}).json
    assert detail["requests"] == 4 and [h["seq"] for h in detail["heartbeats"]] == [4, 3]
    assert detail["agent_version"] == "1.0.0"


@pytest.mark.parametrize("change, status, code", [
    (lambda m, other: dict(m, server_id=other), 403, "permission_denied"),
    (lambda m, other: dict(m, kind="system"), 400, "invalid_input"),
    (lambda m, other: dict(m, data={"versions": {"dns": 1}}), 400, "invalid_input"),
    (lambda m, other: dict(m, collected_at="yesterday"), 400, "invalid_input"),
    (lambda m, other: dict(m, extra=1), 400, "invalid_input"),
])
def test_bad_heartbeats_are_refused(rpc, admin, server, api, change, status, code):
    other = rpc.call("inventory", "create_server", admin, {"name": "other", "address": "127.0.0.2", "os": "ubuntu"})
    body = change(message("heartbeat", server["id"], 1), other["id"])
    answer = api.simulate_post("/api/v2/monitoring/heartbeat", json=body, headers=_agent(rpc, server["id"]))
    assert answer.status_code == status and answer.json["error"] == code


def test_only_agent_tokens_send_heartbeats(admin_token, server, api):
    body = message("heartbeat", server["id"], 1)
    assert api.simulate_post("/api/v2/monitoring/heartbeat", json=body).status_code == 401
    answer = api.simulate_post("/api/v2/monitoring/heartbeat", json=body,
                               headers={"Authorization": f"Bearer {admin_token}"})
    assert answer.status_code == 403
    answer = api.simulate_post("/api/v2/monitoring/heartbeat", body="{", headers={
        "Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"})
    assert answer.status_code == 400


def test_an_agent_token_reaches_nothing_else(rpc, server, api):
    headers = _agent(rpc, server["id"])
    assert api.simulate_get(f"/api/v2/monitoring/servers/{server['id']}/system", headers=headers).status_code == 403
