"""Heartbeats through the gateway, liveness transitions and the fleet list (down after 1 s in these tests)."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from services.monitoring_ingest.service import MonitoringIngestService
from tests.conftest import agent_token

from tests.conftest import MONITORING_CONFIG
from .helpers import message, wait_for


def _agent(rpc, server_id):
    return {"Authorization": f"Bearer {agent_token(rpc, server_id)}"}


def _shifted(minutes):
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()


def _states(events):
    return [(p["server_id"], p["previous_state"], p["state"]) for name, p in events if name == "server_state_changed"]


def test_a_silent_server_goes_down_once_and_up_again(rpc, admin, server, api, start_service, monitoring,
                                                     monitoring_events, scalar):
    start_service(MonitoringIngestService, MONITORING_CONFIG)  # a second replica sweeps too
    headers = _agent(rpc, server["id"])

    def state():
        return scalar("SELECT state FROM monitoring.liveness WHERE server_id = :s", s=server["id"])

    answer = api.simulate_post("/api/v2/monitoring/heartbeat", json=message("heartbeat", server["id"], 1),
                               headers=headers)
    assert answer.status_code == 202 and answer.json == {"accepted": True, "server_id": server["id"], "seq": 1,
                                                         "collect": {"system": True, "dns": True}}
    wait_for(lambda: state() == "up")
    wait_for(lambda: state() == "down", timeout=5)
    api.simulate_post("/api/v2/monitoring/heartbeat", json=message("heartbeat", server["id"], 2), headers=headers)
    wait_for(lambda: state() == "up")
    wait_for(lambda: state() == "down", timeout=5)
    # Another server goes silent last: its "down" needs a sweep that began after the first server's
    # last change, so a repeat of that change would be on the queue by the time it comes.
    other = rpc.call("inventory", "create_server", admin, {"name": "other", "address": "127.0.0.2", "os": "ubuntu"})
    api.simulate_post("/api/v2/monitoring/heartbeat", json=message("heartbeat", other["id"], 1),
                      headers=_agent(rpc, other["id"]))
    received = []
    wait_for(lambda: received.extend(monitoring_events()) or (other["id"], "up", "down") in _states(received),
             what="the other server's down")
    mine = [change for change in _states(received) if change[0] == server["id"]]
    assert mine == [(server["id"], "unknown", "up"), (server["id"], "up", "down"),
                    (server["id"], "down", "up"), (server["id"], "up", "down")], received
    assert {p["server_name"] for _, p in received if p["server_id"] == server["id"]} == {server["name"]}


def test_the_fleet_list_shows_liveness_requests_and_versions(rpc, admin_token, server, api, monitoring, scalar):
    headers = _agent(rpc, server["id"])
    for seq in range(1, 5):
        heartbeat = message("heartbeat", server["id"], seq, versions={"dns": "3.2.6", "dhcp": "2.2.0"})
        assert api.simulate_post("/api/v2/monitoring/heartbeat", json=heartbeat, headers=headers).status_code == 202
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.heartbeats WHERE server_id = :s", s=server["id"]) == 4)

    row = wait_for(lambda: (r := _row(api, admin_token, server))["state"] == "running" and r,
                   what="inventory to record the reported versions")
    assert row["requests"] == 4 and row["requests_status"] == "green"
    assert row["versions"] == {"dns": "3.2.6", "dhcp": "2.2.0"} and row["state"] == "running"
    shown = api.simulate_get(f"/api/v2/servers/{server['id']}", headers={"Authorization": f"Bearer {admin_token}"}).json
    assert (shown["requests"], shown["requests_status"], shown["state"]) == (4, "green", "running")

    detail = api.simulate_get(f"/api/v2/monitoring/servers/{server['id']}/heartbeats", params={"limit": "2"},
                              headers={"Authorization": f"Bearer {admin_token}"}).json
    assert detail["requests"] == 4 and [h["seq"] for h in detail["heartbeats"]] == [4, 3]
    assert detail["agent_version"] == "1.0.0"


def _row(api, admin_token, server, **params):
    """The server's row in the list (None when the list, filtered by ``params``, leaves it out)."""
    rows = api.simulate_get("/api/v2/servers", params=dict(params, per_page=500),
                            headers={"Authorization": f"Bearer {admin_token}"}).json["items"]
    return next((r for r in rows if r["id"] == server["id"]), None)


def test_one_state_the_filter_and_the_row_agree_and_a_manual_install_is_recorded(rpc, admin_token, server, api,
                                                                                   monitoring, engine):
    """Monitoring's liveness decides; inventory keeps its copy, which both the row and ?state= read.

    The server was never push-installed (a manual install): its heartbeats alone say what runs there.
    """
    headers, auth = _agent(rpc, server["id"]), {"Authorization": f"Bearer {admin_token}"}
    seq, seen = [0], set()

    def agreeing(beating):
        if beating:  # down after 1 s here: heartbeats go on until the row was seen running
            seq[0] += 1
            heartbeat = message("heartbeat", server["id"], seq[0], versions={"dns": "3.2.6", "monitor": "1.0.0"})
            assert api.simulate_post("/api/v2/monitoring/heartbeat", json=heartbeat, headers=headers).status_code == 202
        row = _row(api, admin_token, server)
        if row["state"] != "unknown":
            seen.add(row["state"])
            # Whatever the row says at a moment, the filter on that state holds the row (unless it just changed).
            assert _row(api, admin_token, server, state=row["state"]) or _row(api, admin_token, server) != row, row
        return row["state"] == ("running" if beating else "down")

    wait_for(lambda: agreeing(True), what="the row shown running, found by ?state=running")
    # What the updater's diagnostics reports as the last heartbeat ("last at None" before).
    last = rpc.call("monitoring_ingest", "fleet_status", [server["id"]])[str(server["id"])]["last_heartbeat_at"]
    assert datetime.fromisoformat(last) > datetime.now(timezone.utc) - timedelta(minutes=1)
    wait_for(lambda: agreeing(False), what="the row shown down, found by ?state=down")
    detail = api.simulate_get(f"/api/v2/servers/{server['id']}", headers=auth).json
    components = {c["name"]: (c["state"], c["version"]) for c in detail["components"]}
    assert components["dns"] == ("running", "3.2.6") and components["monitor"] == ("running", "1.0.0"), components
    assert components["dhcp"] == ("not_installed", None)
    assert _row(api, admin_token, server, state="running") is None  # down now, and only down
    assert _row(api, admin_token, server, state="down")["state"] == "down"

    # Two minutes later the heartbeats of the last two minutes are none: a down server shows so.
    with engine.begin() as connection:
        connection.execute(text("UPDATE monitoring.liveness SET recent_heartbeats = ARRAY("
                                "SELECT t - interval '3 minutes' FROM unnest(recent_heartbeats) AS t) "
                                "WHERE server_id = :s"), {"s": server["id"]})
    wait_for(lambda: _row(api, admin_token, server)["requests"] == 0, what="requests of the last two minutes")
    assert _row(api, admin_token, server)["requests_status"] == "red"

    # It comes back running DNS only: the monitor it no longer reports is stopped, and the state follows.
    heartbeat = message("heartbeat", server["id"], 5, versions={"dns": "3.2.7"})
    assert api.simulate_post("/api/v2/monitoring/heartbeat", json=heartbeat, headers=headers).status_code == 202
    wait_for(lambda: (_row(api, admin_token, server, state="running") or {}).get("versions") == {"dns": "3.2.7"},
             what="the new version, filtered as running")
    detail = api.simulate_get(f"/api/v2/servers/{server['id']}", headers=auth).json
    components = {c["name"]: (c["state"], c["version"]) for c in detail["components"]}
    assert components["dns"] == ("running", "3.2.7") and components["monitor"][0] == "stopped", components


@pytest.mark.parametrize("change, status, code", [
    (lambda m, other: dict(m, server_id=other), 403, "permission_denied"),
    (lambda m, other: dict(m, kind="system"), 400, "invalid_input"),
    (lambda m, other: dict(m, data={"versions": {"dns": 1}}), 400, "invalid_input"),
    (lambda m, other: dict(m, collected_at="yesterday"), 400, "invalid_input"),
    (lambda m, other: dict(m, extra=1), 400, "invalid_input"),
    (lambda m, other: dict(m, data=dict(m["data"], uptime=5)), 400, "invalid_input"),
    (lambda m, other: dict(m, collected_at=_shifted(6)), 400, "invalid_input"),
    (lambda m, other: dict(m, collected_at=_shifted(-6)), 400, "invalid_input"),
    (lambda m, other: dict(m, data=dict(m["data"], versions={"dns": "x" * 64} | {"y" * n: "1" for n in range(200)})),
     413, "payload_too_large"),
])
def test_bad_heartbeats_are_refused(rpc, admin, server, api, monitoring, scalar, change, status, code):
    other = rpc.call("inventory", "create_server", admin, {"name": "other", "address": "127.0.0.2", "os": "ubuntu"})
    body = change(message("heartbeat", server["id"], 1), other["id"])
    answer = api.simulate_post("/api/v2/monitoring/heartbeat", json=body, headers=_agent(rpc, server["id"]))
    assert answer.status_code == status and answer.json["error"] == code
    assert set(answer.json) == {"error", "message", "details"}
    # Nothing of it is stored: the one heartbeat after it is the server's first.
    good = message("heartbeat", server["id"], 2, collected_at=datetime.now(timezone.utc) - timedelta(minutes=4))
    assert api.simulate_post("/api/v2/monitoring/heartbeat", json=good,
                             headers=_agent(rpc, server["id"])).status_code == 202
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.heartbeats WHERE server_id = :s", s=server["id"]))
    assert scalar("SELECT array_agg(seq) FROM monitoring.heartbeats") == [2]


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
