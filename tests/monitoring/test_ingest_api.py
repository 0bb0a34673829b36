"""The Monitoring REST API: what a client sees for good and bad input."""
import pytest

from tests.conftest import create_token


@pytest.fixture
def admin_headers(admin_token):
    return {"Authorization": f"Bearer {admin_token}"}


@pytest.mark.parametrize("path, params, field", [
    ("/servers/1/system", {"step": "61"}, "step"),
    ("/servers/1/system", {"step": "0"}, "step"),
    ("/servers/1/system", {"start": "2026-01-02T00:00:00+00:00", "end": "2026-01-01T00:00:00+00:00"}, "start"),
    ("/servers/1/system", {"start": "2026-01-01T00:00:00"}, "start"),  # no UTC offset
    ("/servers/1/dns", {"start": "last tuesday"}, "start"),
    ("/servers/1/dns", {"start": "2020-01-01T00:00:00+00:00", "end": "2026-01-01T00:00:00+00:00"}, "step"),
    ("/servers/1/dns", {"colour": "blue"}, "colour"),
    ("/servers/1/records", {"limit": "0"}, "limit"),
    ("/servers/1/heartbeats", {"limit": "many"}, "limit"),
    ("/records/rps", {}, "name"),
    ("/records/rps", {"name": "www.example.com", "type": "A!"}, "type"),
])
def test_bad_queries_are_400_with_the_field_named(api, admin_headers, monitoring, path, params, field):
    answer = api.simulate_get(f"/api/v2/monitoring{path}", params=params, headers=admin_headers)
    assert answer.status_code == 400, answer.text
    assert answer.json["error"] == "invalid_input" and field in answer.json["details"]


def test_no_data_is_an_empty_series(api, admin_headers, monitoring):
    answer = api.simulate_get("/api/v2/monitoring/servers/99/system", params={"step": "3600"}, headers=admin_headers)
    assert answer.status_code == 200
    assert answer.json["points"] == [] and answer.json["step"] == 3600 and answer.json["server_id"] == 99


def test_retention_override_is_for_admins_and_validated(rpc, admin, api, admin_headers, monitoring, scalar):
    rpc.call("inventory", "create_user", admin, {"name": "op", "role": "operator"})
    operator = create_token(rpc, admin, {"user": "op"})["token"]
    server = rpc.call("inventory", "create_server", admin, {"name": "kept", "address": "192.0.2.5", "os": "ubuntu"})
    path = f"/api/v2/monitoring/servers/{server['id']}/retention"
    refused = api.simulate_put(path, json={"raw_retention_minutes": 600},
                               headers={"Authorization": f"Bearer {operator}"})
    assert refused.status_code == 403
    bad = api.simulate_put(path, json={"raw_retention_minutes": 0}, headers=admin_headers)
    assert bad.status_code == 400 and "raw_retention_minutes" in bad.json["details"]
    good = api.simulate_put(path, json={"raw_retention_minutes": 600}, headers=admin_headers)
    assert good.status_code == 200 and good.json == {"raw_retention_minutes": 600, "aggregated_retention_days": None}
    assert scalar(f"SELECT raw_retention_minutes FROM monitoring.retention_overrides WHERE server_id = {server['id']}") == 600
    missing = api.simulate_put(f"/api/v2/monitoring/servers/{server['id'] + 1}/retention",
                               json={"raw_retention_minutes": 600}, headers=admin_headers)
    assert missing.status_code == 404 and missing.json["error"] == "server_not_found"
    assert scalar("SELECT count(*) FROM monitoring.retention_overrides") == 1


def test_the_operations_are_in_the_openapi_document(api):
    paths = api.simulate_get("/api/v2/openapi.json").json["paths"]
    assert "post" in paths["/api/v2/monitoring/heartbeat"]
    assert paths["/api/v2/monitoring/records/rps"]["get"]["tags"] == ["Monitoring"]
