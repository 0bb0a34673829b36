"""No input gets a 5xx: each class of bad input is a 4xx JSON error naming what is wrong, and stores nothing
(issue 11); what does fail inside is a 500 that says nothing but its request id."""
import json
import logging

import pytest
from falcon import testing

from gateway.app import create_app
from gateway.routes import PREFIX
from shared.errors import StewardError
from shared.rpc import RemoteError
from shared.schemas import MAX_DEPTH

SERVER = {"name": "dns-1", "address": "192.0.2.53", "os": "ubuntu", "ssh_password": "pw"}


def _refused(response, status=400, field=None):
    assert response.status_code == status, response.text
    body = response.json
    assert set(body) == {"error", "message", "details"} and isinstance(body["details"], dict)
    if field:
        assert field in body["details"], body
    return body


@pytest.fixture
def count(engine):
    from sqlalchemy import text

    def count(table):
        with engine.connect() as connection:
            return connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()

    return count


@pytest.mark.parametrize("field, value", [("name", "dns\x00"), ("name", "dns\ud800"), ("ssh_password", "p\x00w"),
                                          ("name", "dns\u202e1"), ("name", "dns\x1b[2J")])
def test_text_no_column_can_store_or_a_name_that_reads_otherwise_is_400(client, auth, count, field, value):
    body = json.dumps(dict(SERVER, **{field: value}))  # json.dumps escapes a lone surrogate as \ud800
    _refused(client.simulate_post(f"{PREFIX}/servers", body=body, headers=dict(auth, **{
        "Content-Type": "application/json"})), field=field)
    assert count("inventory.servers") == 0


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 100_000])
def test_json_nested_deeper_than_the_limit_is_400(client, auth, levels):
    body = '{"name": "c", "kind": "chat", "settings": ' + '[' * levels + ']' * levels + '}'
    answer = _refused(client.simulate_post(f"{PREFIX}/notifications/channels", body=body,
                                           headers=dict(auth, **{"Content-Type": "application/json"})))
    assert "deeper" in answer["message"]


def test_integers_beyond_their_column_are_400_in_a_body_or_query_and_404_in_a_path(client, auth, all_services):
    _refused(client.simulate_get(f"{PREFIX}/servers", params={"page": str(2**31)}, headers=auth), field="page")
    _refused(client.simulate_post(f"{PREFIX}/notifications/rules", json={"name": "r", "channel_ids": [2**63]},
                                  headers=auth), field="channel_ids")
    server = client.simulate_post(f"{PREFIX}/servers", json=SERVER, headers=auth).json
    assert client.simulate_get(f"{PREFIX}/servers/{server['id']}", headers=auth).status_code == 200
    # Only an id's one spelling, within the column's range, names it.
    for server_id in (0, 2**31, 2**31 + server["id"], 10**30, f"00{server['id']}", f"+{server['id']}", "-1"):
        _refused(client.simulate_get(f"{PREFIX}/servers/{server_id}", headers=auth), 404)
    _refused(client.simulate_get(f"{PREFIX}/tasks/not-a-task-id", headers=auth), 404)


def test_time_zone_offsets_beyond_14_hours_are_400_and_an_empty_range_is_no_points(client, auth, all_services):
    system = f"{PREFIX}/monitoring/servers/1/system"
    _refused(client.simulate_get(system, params={"start": "2026-01-01T00:00:00+23:00"}, headers=auth), field="start")
    _refused(client.simulate_get(system, params={"end": "0001-01-01T00:00:00+01:00"}, headers=auth), field="end")
    moment = "2026-01-01T00:00:00+00:00"
    for what in ("system", "dns"):
        empty = client.simulate_get(f"{PREFIX}/monitoring/servers/1/{what}", params={"start": moment, "end": moment},
                                    headers=auth)
        assert empty.status_code == 200 and empty.json["points"] == [], empty.text
    rps = client.simulate_get(f"{PREFIX}/monitoring/records/rps", params={"name": "a.test", "start": moment,
                                                                           "end": moment}, headers=auth)
    assert rps.status_code == 200 and rps.json["points"] == []


def test_a_missing_server_is_404_for_diagnostics_updates_and_rollouts(client, auth, all_services):
    missing = 4242
    for path in (f"/servers/{missing}/actions/diagnostics", f"/servers/{missing}/actions/push-update"):
        assert _refused(client.simulate_post(PREFIX + path, json={}, headers=auth), 404)["error"] == "server_not_found"
    rollout = client.simulate_post(f"{PREFIX}/rollouts", json={"server_ids": [missing]}, headers=auth)
    assert _refused(rollout, 404)["error"] == "server_not_found"
    assert client.simulate_get(f"{PREFIX}/rollouts", headers=auth).json == []


@pytest.mark.parametrize("body", ["{{ 1 / 0 }}", "{{ 'a' + 1 }}", "{{ server.missing.deeper }}", "{% for %}",
                                  "{{ ''.__class__.__mro__ }}"])
def test_a_template_override_that_fails_to_render_in_any_way_is_400(client, auth, all_services, body):
    answer = client.simulate_post(f"{PREFIX}/notifications/templates", json={
        "event_type": "install_finished", "channel_kind": "email", "subject": "s", "body": body}, headers=auth)
    _refused(answer, field="template")
    assert all(not t["overridden"] for t in client.simulate_get(f"{PREFIX}/notifications/templates",
                                                                headers=auth).json)


def test_an_empty_body_where_the_operation_takes_one_is_400_and_changes_nothing(client, auth, all_services, count):
    user = client.simulate_post(f"{PREFIX}/users", json={"name": "ops", "role": "operator"}, headers=auth).json
    channel = client.simulate_post(f"{PREFIX}/notifications/channels", json={
        "name": "hook", "kind": "webhook", "settings": {"url": "http://127.0.0.1:9/", "secret": "s" * 16}},
        headers=auth).json
    rule = client.simulate_post(f"{PREFIX}/notifications/rules", json={"name": "r", "channel_ids": [channel["id"]]},
                                headers=auth).json
    server = client.simulate_post(f"{PREFIX}/servers", json=SERVER, headers=auth).json
    tokens = count("inventory.api_tokens")
    for method, path in [("POST", "/tokens"), ("PUT", f"/monitoring/servers/{server['id']}/retention"),
                         ("PATCH", f"/users/{user['id']}"), ("PATCH", f"/notifications/channels/{channel['id']}"),
                         ("PATCH", f"/notifications/rules/{rule['id']}"), ("PATCH", "/settings")]:
        answer = _refused(client.simulate_request(method, PREFIX + path, headers=auth), field="_schema")
        assert "body is required" in answer["details"]["_schema"][0], (method, path)
    assert count("inventory.api_tokens") == tokens
    # Where no body means the defaults, none is needed.
    assert client.simulate_post(f"{PREFIX}/servers/{server['id']}/actions/push-install", headers=auth).status_code == 202


def test_a_500_says_only_its_request_id_and_the_log_says_the_rest(settings, caplog):
    class FailingRpc:
        """An RPC client whose inventory fails as an unexpected database error would."""

        def service(self, name):
            return self

        def __getattr__(self, method):
            def call(*args, **kwargs):
                if method == "authenticate":
                    return {"user_id": 1, "name": "admin", "role": "admin", "scope": "full", "server_id": None}
                raise RemoteError("inventory.list_users failed: ProgrammingError: SELECT secret FROM users "
                                  "WHERE password = 'hunter2'")
            return call

    client = testing.TestClient(create_app(settings, rpc=FailingRpc(), agent_publisher=object()))
    with caplog.at_level(logging.ERROR, logger="gateway"):
        answer = client.simulate_get(f"{PREFIX}/users", headers={"Authorization": "Bearer t",
                                                                  "X-Request-Id": "req-500-abcdef"})
    assert answer.status_code == 500
    assert answer.json == {"error": "internal_error", "message": "internal error; the request id identifies it in the "
                           "logs", "details": {"request_id": ["req-500-abcdef"]}}
    assert "SELECT" not in answer.text and "ProgrammingError" not in answer.text
    assert any("ProgrammingError" in record.getMessage() for record in caplog.records)
    assert issubclass(RemoteError, StewardError) and RemoteError.http_status == 500
