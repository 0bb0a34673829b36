"""The public API through the real Falcon app and the real services."""
import logging

from gateway.routes import PREFIX
from shared.config import registered_services
from tests.conftest import agent_token

NEW_SERVER = {"name": "dns-1", "address": "dns1.example.com", "os": "ubuntu", "ssh_password": "hunter2-secret"}


def _error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json
    assert body["error"] == code
    assert body["message"]
    assert isinstance(body["details"], dict)
    return body


def _token_for(client, auth, name, role):
    client.simulate_post(f"{PREFIX}/users", json={"name": name, "role": role}, headers=auth)
    created = client.simulate_post(f"{PREFIX}/tokens", json={"user": name}, headers=auth)
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json['token']}"}


def test_everything_but_health_and_docs_needs_a_token(client, all_services, consumer_process):
    _error(client.simulate_get(f"{PREFIX}/servers"), 401, "not_authenticated")
    _error(client.simulate_get(f"{PREFIX}/servers", headers={"Authorization": "Bearer nope"}), 401, "not_authenticated")
    _error(client.simulate_get(f"{PREFIX}/settings", headers={"Authorization": "Basic abc"}), 401, "not_authenticated")
    assert client.simulate_get(f"{PREFIX}/openapi.json").status_code == 200
    assert client.simulate_get(f"{PREFIX}/docs").status_code == 200
    assert client.simulate_get("/healthz").status_code == 200


def test_create_show_list_modify_delete(client, auth):
    created = client.simulate_post(f"{PREFIX}/servers", json=NEW_SERVER, headers=auth)
    assert created.status_code == 201
    server = created.json
    assert created.headers["location"].endswith(f"/servers/{server['id']}")
    assert "ssh_password" not in server and "hunter2" not in created.text

    shown = client.simulate_get(f"{PREFIX}/servers/{server['id']}", headers=auth).json
    assert shown["address"] == "dns1.example.com"

    listed = client.simulate_get(f"{PREFIX}/servers", params={"search": "DNS", "sort": "-name", "per_page": 50}, headers=auth).json
    assert listed["total"] == 1
    assert listed["items"][0] == {
        "id": server["id"], "name": "dns-1", "address": "dns1.example.com", "requests": 0,
        "requests_status": "red", "versions": {}, "state": "unknown",
    }

    patched = client.simulate_patch(f"{PREFIX}/servers/{server['id']}", json={"ssh_port": 2222}, headers=auth)
    assert patched.status_code == 200 and patched.json["ssh_port"] == 2222

    assert client.simulate_delete(f"{PREFIX}/servers/{server['id']}", headers=auth).status_code == 204
    _error(client.simulate_get(f"{PREFIX}/servers/{server['id']}", headers=auth), 404, "server_not_found")


def test_bad_input_is_400_with_details_and_stores_nothing(client, auth):
    body = _error(
        client.simulate_post(f"{PREFIX}/servers", json={"name": "x", "address": "bad..", "os": "ubuntu", "rogue": 1}, headers=auth),
        400, "invalid_input",
    )
    assert set(body["details"]) == {"address", "rogue"}
    _error(client.simulate_post(f"{PREFIX}/servers", body="{not json", headers=dict(auth, **{"Content-Type": "application/json"})),
           400, "invalid_json")
    _error(client.simulate_post(f"{PREFIX}/servers", json=["a"], headers=auth), 400, "invalid_input")
    _error(client.simulate_post(f"{PREFIX}/servers", body="name=x", headers=dict(auth, **{"Content-Type": "application/x-www-form-urlencoded"})),
           415, "unsupported_media_type")
    _error(client.simulate_get(f"{PREFIX}/servers", params={"per_page": 0}, headers=auth), 400, "invalid_input")
    _error(client.simulate_get(f"{PREFIX}/servers", params={"colour": "red"}, headers=auth), 400, "invalid_input")
    assert client.simulate_get(f"{PREFIX}/servers", headers=auth).json["total"] == 0


def test_duplicate_name_is_409_and_keeps_the_stored_server(client, auth):
    client.simulate_post(f"{PREFIX}/servers", json=NEW_SERVER, headers=auth)
    _error(client.simulate_post(f"{PREFIX}/servers", json=dict(NEW_SERVER, name="DNS-1", address="10.1.1.1"), headers=auth),
           409, "duplicate_name")
    listed = client.simulate_get(f"{PREFIX}/servers", headers=auth).json
    assert listed["total"] == 1 and listed["items"][0]["address"] == "dns1.example.com"


def test_unknown_routes_and_methods_are_json(client, auth):
    _error(client.simulate_get(f"{PREFIX}/nothing-here", headers=auth), 404, "not_found")
    _error(client.simulate_get(f"{PREFIX}/servers/abc", headers=auth), 404, "not_found")
    _error(client.simulate_put(f"{PREFIX}/servers", headers=auth), 405, "method_not_allowed")


def test_roles_and_server_users(client, auth):
    viewer = _token_for(client, auth, "viewer", "viewer")
    operator = _token_for(client, auth, "operator", "operator")
    owner = _token_for(client, auth, "owner", "operator")

    _error(client.simulate_post(f"{PREFIX}/servers", json=NEW_SERVER, headers=viewer), 403, "permission_denied")
    server = client.simulate_post(f"{PREFIX}/servers", json=dict(NEW_SERVER, server_user="owner"), headers=auth).json
    assert client.simulate_get(f"{PREFIX}/servers", headers=viewer).json["total"] == 1

    _error(client.simulate_patch(f"{PREFIX}/servers/{server['id']}", json={"ssh_port": 1}, headers=operator), 403, "permission_denied")
    assert client.simulate_patch(f"{PREFIX}/servers/{server['id']}", json={"ssh_port": 2}, headers=owner).status_code == 200
    _error(client.simulate_patch(f"{PREFIX}/settings", json={"backup": {"password": "x"}}, headers=operator), 403, "permission_denied")
    _error(client.simulate_get(f"{PREFIX}/users", headers=operator), 403, "permission_denied")


def test_settings_round_trip_without_secrets(client, auth):
    patched = client.simulate_patch(f"{PREFIX}/settings", json={"backup": {"password": "backup-secret"},
                                                                 "monitoring": {"dns_interval_seconds": 30}}, headers=auth)
    assert patched.status_code == 200
    assert patched.json["backup"] == {"password_set": True}
    assert "backup-secret" not in patched.text
    shown = client.simulate_get(f"{PREFIX}/settings", headers=auth).json
    assert shown["monitoring"]["dns_interval_seconds"] == 30
    _error(client.simulate_patch(f"{PREFIX}/settings", json={"monitoring": {"dns_interval_seconds": 1}}, headers=auth),
           400, "invalid_input")
    _error(client.simulate_patch(f"{PREFIX}/settings", json={"nonsense": {}}, headers=auth), 400, "invalid_input")


def test_rabbitmq_test_action(client, auth):
    ok = client.simulate_post(f"{PREFIX}/settings/rabbitmq/test", json={"password": "guest"}, headers=auth).json
    assert ok["ok"] is True
    failed = client.simulate_post(f"{PREFIX}/settings/rabbitmq/test", json={"password": "wrong"}, headers=auth).json
    assert failed["ok"] is False


def test_tokens_endpoints(client, auth):
    created = client.simulate_post(f"{PREFIX}/tokens", json={"name": "ci", "expires_in_days": 7}, headers=auth)
    assert created.status_code == 201 and created.json["expires_at"]
    new_auth = {"Authorization": f"Bearer {created.json['token']}"}
    listed = client.simulate_get(f"{PREFIX}/tokens", headers=new_auth).json
    assert {t["name"] for t in listed} >= {"ci"} and all("token" not in t for t in listed)
    assert client.simulate_delete(f"{PREFIX}/tokens/{created.json['id']}", headers=auth).status_code == 204
    _error(client.simulate_get(f"{PREFIX}/tokens", headers=new_auth), 401, "not_authenticated")
    _error(client.simulate_get(f"{PREFIX}/tokens", params={"bogus": 1}, headers=auth), 400, "invalid_input")


def test_health_reports_broker_and_services(client, all_services, consumer_process):
    response = client.simulate_get("/healthz")
    body = response.json
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["broker"]["reachable"] is True
    assert set(body["services"]) == set(registered_services())
    assert all(service["reachable"] for service in body["services"].values())


def test_request_id_travels_into_the_service_logs_and_secrets_into_none(client, auth, caplog):
    caplog.set_level(logging.DEBUG)
    response = client.simulate_post(f"{PREFIX}/servers", json=dict(NEW_SERVER, name="dup"), headers=dict(auth, **{"X-Request-Id": "req-abcdef12"}))
    client.simulate_post(f"{PREFIX}/servers", json=dict(NEW_SERVER, name="dup"), headers=dict(auth, **{"X-Request-Id": "req-abcdef34"}))
    assert response.headers["x-request-id"] == "req-abcdef12"
    from shared.logs import JsonFormatter

    formatter = JsonFormatter("test")
    lines = [formatter.format(record) for record in caplog.records]
    access = [line for line in lines if '"gateway.access"' in line]
    assert any('"request_id": "req-abcdef12"' in line and '"status": 201' in line for line in access)
    # The duplicate failed inside inventory: its log line carries the gateway's request id.
    assert any('"request_id": "req-abcdef34"' in line and '"nameko.containers"' in line for line in lines)
    assert not any("hunter2" in line for line in lines)


def test_openapi_is_generated_from_the_validating_schemas(client):
    document = client.simulate_get(f"{PREFIX}/openapi.json").json
    assert document["openapi"].startswith("3.")
    assert {tag["name"] for tag in document["tags"]} == {"PVServers", "Monitoring", "Admin"}
    create = document["paths"][f"{PREFIX}/servers"]["post"]
    schema_name = create["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    schema = document["components"]["schemas"][schema_name]
    assert set(schema["required"]) == {"name", "address", "os"}
    assert schema["properties"]["os"]["enum"] == ["ubuntu", "centos"]
    assert schema["additionalProperties"] is False
    assert "ssh_password" in schema["properties"]
    assert "ssh_password" not in document["components"]["schemas"]["ServerDetail"]["properties"]
    listing = document["paths"][f"{PREFIX}/servers"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"search", "sort", "page", "per_page"}


def test_agent_token_is_refused_outside_agent_routes(client, auth, rpc):
    server = client.simulate_post(f"{PREFIX}/servers", json=NEW_SERVER, headers=auth).json
    agent = {"Authorization": f"Bearer {agent_token(rpc, server['id'])}"}
    _error(client.simulate_get(f"{PREFIX}/servers", headers=agent), 403, "permission_denied")
    _error(client.simulate_patch(f"{PREFIX}/servers/{server['id']}", json={"ssh_port": 1}, headers=agent), 403, "permission_denied")
