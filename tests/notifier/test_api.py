"""Notifications through the real gateway app and the CLI, with the real notifier behind them."""
import json

import pytest
from sqlalchemy import text

from cli.main import main
from gateway.routes import PREFIX
from tests.notifier.conftest import wait_for

N = f"{PREFIX}/notifications"


def _error(response, status, code):
    assert response.status_code == status, response.text
    assert response.json["error"] == code and response.json["message"]
    return response.json


def _viewer(client, auth):
    client.simulate_post(f"{PREFIX}/users", json={"name": "watcher", "role": "viewer"}, headers=auth)
    token = client.simulate_post(f"{PREFIX}/tokens", json={"user": "watcher"}, headers=auth).json["token"]
    return {"Authorization": f"Bearer {token}"}


def test_channels_keep_secrets_sealed_and_bad_input_is_a_clear_400(client, auth, notifier, engine, smtp):
    created = client.simulate_post(f"{N}/channels", headers=auth, json={
        "name": "ops-mail", "kind": "email", "settings": {
            "host": "127.0.0.1", "port": smtp.port, "starttls": False, "username": "steward", "password": "mail-pw-hunter2",
            "sender": "steward@example.net", "recipients": ["ops@example.net"]}})
    assert created.status_code == 201, created.text
    assert "hunter2" not in created.text and created.json["settings"]["password_set"] is True
    with engine.connect() as connection:
        sealed = connection.execute(text("SELECT secret_sealed, settings::text FROM notifier.channels")).one()
    assert "hunter2" not in sealed[0] and "hunter2" not in sealed[1]

    body = _error(client.simulate_post(f"{N}/channels", headers=auth, json={
        "name": "broken", "kind": "email", "settings": {"port": 99999, "recipients": ["not-an-address"]}}),
        400, "invalid_input")
    assert {"host", "port", "sender", "recipients"} <= set(body["details"])
    _error(client.simulate_post(f"{N}/channels", headers=auth, json={"name": "x", "kind": "pager", "settings": {}}),
           400, "invalid_input")
    _error(client.simulate_post(f"{N}/channels", headers=auth, json={
        "name": "hook", "kind": "webhook", "settings": {"url": "ftp://example.net", "secret": "short"}}),
        400, "invalid_input")
    _error(client.simulate_post(f"{N}/channels", headers=auth, json={
        "name": "tg", "kind": "chat", "settings": {"url": "https://api.telegram.org/botX/sendMessage",
                                                   "payload_template": "{\"text\": {{ text }}"}}), 400, "invalid_input")
    _error(client.simulate_post(f"{N}/channels", headers=auth, json=created.json | {"id": None}), 400, "invalid_input")
    _error(client.simulate_post(f"{N}/channels", headers=auth, json={
        "name": "ops-mail", "kind": "webhook", "settings": {"url": "http://127.0.0.1/x", "secret": "0123456789abcdef"}}),
        409, "duplicate_name")
    assert [c["name"] for c in client.simulate_get(f"{N}/channels", headers=auth).json] == ["ops-mail"]

    # A change that leaves the password out keeps it; the test message logs in with it.
    patched = client.simulate_patch(f"{N}/channels/{created.json['id']}", headers=auth,
                                    json={"settings": {"recipients": ["oncall@example.net"]}})
    assert patched.status_code == 200 and patched.json["settings"]["password_set"] is True
    assert patched.json["settings"]["recipients"] == ["oncall@example.net"]
    _error(client.simulate_get(f"{N}/channels/999", headers=auth), 404, "channel_not_found")


def test_send_test_message_reports_what_the_far_end_said(client, auth, notifier, receiver):
    chat = client.simulate_post(f"{N}/channels", headers=auth, json={
        "name": "telegram", "kind": "chat", "settings": {
            "url": receiver.url, "payload_template": "{\"chat_id\": \"-100123\", \"text\": {{ text|tojson }}}"}}).json
    assert chat["settings"]["url_set"] is True and "url" not in chat["settings"]
    result = client.simulate_post(f"{N}/channels/{chat['id']}/test", headers=auth).json
    assert result["ok"] is True and "HTTP 204" in result["message"]
    assert receiver.url not in result["message"]  # the chat URL is a credential
    [sent] = receiver.json_bodies()
    assert sent["chat_id"] == "-100123" and sent["text"].startswith("*[Steward] Test message*\n")

    receiver.stop()
    result = client.simulate_post(f"{N}/channels/{chat['id']}/test", headers=auth).json
    assert result["ok"] is False and "connection failed" in result["message"]


def test_rules_templates_and_roles(client, auth, notifier, receiver, emit):
    viewer = _viewer(client, auth)
    hook = client.simulate_post(f"{N}/channels", headers=auth, json={
        "name": "hook", "kind": "webhook", "settings": {"url": receiver.url, "secret": "0123456789abcdef"}}).json
    _error(client.simulate_post(f"{N}/rules", headers=auth, json={"name": "r", "channel_ids": [hook["id"], 999]}),
           400, "invalid_input")
    _error(client.simulate_post(f"{N}/rules", headers=auth, json={"name": "r", "channel_ids": [hook["id"]],
                                                                  "event_types": ["install_progress"]}), 400, "invalid_input")
    rule = client.simulate_post(f"{N}/rules", headers=auth, json={
        "name": "berlin disks", "channel_ids": [hook["id"]], "event_types": ["disk_low"], "server_search": "BERLIN"})
    assert rule.status_code == 201, rule.text
    _error(client.simulate_post(f"{N}/rules", headers=viewer, json={"name": "v", "channel_ids": [hook["id"]]}),
           403, "permission_denied")
    assert [r["name"] for r in client.simulate_get(f"{N}/rules", headers=viewer).json] == ["berlin disks"]

    body = _error(client.simulate_post(f"{N}/templates", headers=auth, json={
        "event_type": "disk_low", "channel_kind": "webhook", "subject": "{{ server.nickname }} full",
        "body": "x"}), 400, "invalid_input")
    assert "nickname" in body["details"]["template"][0]
    _error(client.simulate_post(f"{N}/templates", headers=auth, json={
        "event_type": "disk_low", "channel_kind": "webhook", "subject": "{% if %}", "body": "x"}), 400, "invalid_input")
    saved = client.simulate_post(f"{N}/templates", headers=auth, json={
        "event_type": "disk_low", "channel_kind": "webhook",
        "subject": "DISK {{ server.name }} {{ event.mountpoint }}", "body": "free: {{ event.free_percent }}%"})
    assert saved.status_code == 201 and saved.json["overridden"] is True
    effective = client.simulate_get(f"{N}/templates", headers=viewer).json
    disk = {t["channel_kind"]: t for t in effective if t["event_type"] == "disk_low"}
    assert disk["webhook"]["subject"].startswith("DISK") and disk["email"]["overridden"] is False

    emit("disk_low", server_id=1, server_name="dns-paris-1", mountpoint="/", free_percent=1.0)  # no rule matches
    emit("disk_low", server_id=2, server_name="dns-berlin-2", mountpoint="/srv", free_percent=2.5)
    wait_for(lambda: receiver.requests, what="the webhook")
    wait_for(lambda: client.simulate_get(f"{N}/deliveries", headers=viewer, params={"status": "delivered"}).json,
             what="the log")
    [sent] = receiver.json_bodies()
    assert sent["subject"] == "DISK dns-berlin-2 /srv" and sent["text"] == "free: 2.5%"
    [logged] = client.simulate_get(f"{N}/deliveries", headers=viewer).json
    assert logged["server_ids"] == [2] and logged["event_types"] == ["disk_low"]

    _error(client.simulate_post(f"{N}/deliveries/{logged['id']}/retry", headers=auth), 409, "conflict")
    _error(client.simulate_post(f"{N}/deliveries/{logged['id']}/retry", headers=viewer), 403, "permission_denied")
    _error(client.simulate_get(f"{N}/deliveries/999", headers=viewer), 404, "delivery_not_found")
    _error(client.simulate_get(f"{N}/deliveries", headers=viewer, params={"status": "lost"}), 400, "invalid_input")
    assert client.simulate_delete(f"{N}/templates/{saved.json['id']}", headers=auth).status_code == 204
    assert client.simulate_delete(f"{N}/rules/{rule.json['id']}", headers=auth).status_code == 204
    assert client.simulate_delete(f"{N}/channels/{hook['id']}", headers=auth).status_code == 204
    # The log outlives the channel.
    assert client.simulate_get(f"{N}/deliveries/{logged['id']}", headers=viewer).json["channel_name"] == "hook"


@pytest.fixture
def steward(api_url, admin_token, capsys):
    def run(*argv):
        code = main(["--url", api_url, "--token", admin_token, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_channels_rules_deliveries_and_retry(steward, notifier, receiver, emit, tmp_path):
    secret = tmp_path / "key"
    secret.write_text("cli-signing-secret-0123\n")
    code, out, _ = steward("notifications", "channels", "create", "--name", "hook", "--kind", "webhook",
                           "--set", f"url={receiver.url}", "--secret-file", str(secret))
    assert code == 0 and "created webhook channel hook" in out
    code, out, _ = steward("notifications", "channels", "list")
    assert "hook" in out and "secret_set=True" in out and "cli-signing" not in out
    code, out, _ = steward("notifications", "channels", "test", "hook")
    assert code == 0 and out.startswith("ok: POST")
    code, out, err = steward("notifications", "rules", "create", "--name", "backups", "--channel", "hook",
                             "--event", "backup_failed")
    assert code == 0, err
    code, _, err = steward("notifications", "rules", "create", "--name", "x", "--channel", "nope")
    assert code == 1 and "no channel nope" in err

    receiver.stop()
    emit("backup_failed", backup_server_id=1, backup_server_name="backup-1", backup_id="b-1", error="disk full")
    dead = wait_for(lambda: json.loads(steward("--json", "notifications", "deliveries", "list", "--status", "dead")[1]),
                    what="a dead letter")
    receiver.start()
    code, out, _ = steward("notifications", "deliveries", "retry", str(dead[0]["id"]))
    assert code == 0 and "pending again" in out
    wait_for(lambda: "delivered" in steward("notifications", "deliveries", "list", "--channel", "hook")[1],
             what="the retried delivery")
    code, out, _ = steward("notifications", "deliveries", "show", str(dead[0]["id"]))
    assert "[Steward] Backup on backup-1 FAILED" in out and "connection failed" in out and "HTTP 204" in out
    assert len(receiver.requests) == 2  # the test message and the retried delivery
