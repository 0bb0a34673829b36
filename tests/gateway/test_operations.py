"""The route table (gateway/routes.py) is the one place routes come from: each of its operations is served,
with exactly its methods, documented, and answers a real request with the status it documents."""
import re
import uuid
from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit

import falcon
import pytest
from falcon import testing
from falcon.routing import map_http_methods

from gateway.app import create_app
from shared.config import service_class
from gateway.routes import OPERATIONS, PREFIX
from tests.monitoring.helpers import refused_by_the_database
from tests.backup.daemon_lab import drop_databases, enrolled_daemon
from tests.notifier.conftest import FAST_POLICY, free_port
from tests.conftest import agent_token
from tests.updater.images import dns_image
from tests.waiting import wait_for
from services.updater import models as updater_models
from shared.tasks import FINISHED, TaskStore
from sqlalchemy.orm import sessionmaker



def _template(path):
    return re.sub(r"{\w+(:\w+)?}", "{}", path)


def test_create_app_adds_each_path_of_the_table_once_with_exactly_its_methods(settings, rpc, monkeypatch):
    added = []
    add_route = falcon.App.add_route

    def recording_add_route(app, uri_template, resource, **kwargs):
        added.append((uri_template, resource))
        return add_route(app, uri_template, resource, **kwargs)

    monkeypatch.setattr(falcon.App, "add_route", recording_add_route)
    create_app(settings, rpc=rpc)

    table = {}
    for op in OPERATIONS:
        table.setdefault(op.uri_template, {"methods": set(), "resources": set()})
        table[op.uri_template]["methods"].add(op.method)
        table[op.uri_template]["resources"].add(op.resource)
    assert len(added) == len(table), "a path added twice, or by hand beside the table"
    for uri_template, resource in added:
        assert uri_template in table, f"{uri_template} is routed but not in OPERATIONS"
        assert table[uri_template]["resources"] == {type(resource)}
        methods = table[uri_template]["methods"]
        assert set(map_http_methods(resource)) == methods | ({"HEAD"} if "GET" in methods else set()), uri_template


def test_the_openapi_document_lists_every_operation_of_the_api_and_its_parameter_types(client):
    document = client.simulate_get(f"{PREFIX}/openapi.json").json
    documented = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    assert documented == {(op.method, op.openapi_path) for op in OPERATIONS if op.family is not None}
    assert {op.uri_template for op in OPERATIONS if op.family is None} == {
        f"{PREFIX}/openapi.json", f"{PREFIX}/asyncapi.json", f"{PREFIX}/docs", "/healthz", "/healthz/services", "/"}
    run = document["paths"][f"{PREFIX}/servers/{{server_id}}/diagnostics/{{run_id}}"]["get"]
    assert [(p["name"], p["schema"]["type"]) for p in run["parameters"]] == [("server_id", "integer"),
                                                                           ("run_id", "string")]


def test_every_location_names_a_path_of_the_table():
    paths = {_template(op.path) for op in OPERATIONS}
    for op in OPERATIONS:
        if op.location:
            assert op.method == "POST" and _template(op.location) in paths, (op.method, op.path, op.location)


class Walk:
    """Sends each operation of the table as a client would and checks it answers its documented status."""

    def __init__(self, client, token):
        self.client = client
        self.auth = {"Authorization": f"Bearer {token}"}
        self.operations = {(op.method, op.path): op for op in OPERATIONS}
        self.sent = set()

    def __call__(self, method, path, ids=None, headers=None, **request):
        op = self.operations[(method, path)]
        url = re.sub(r"{(\w+)(?::\w+)?}", lambda m: str(ids[m[1]]), op.uri_template)
        response = self.client.simulate_request(method, url, headers=self.auth if headers is None else headers,
                                                **request)
        assert response.status_code == op.status, (method, url, response.text)
        if op.location:
            assert response.headers["location"].startswith(PREFIX + "/"), (method, url)
        self.sent.add((method, path))
        return response

    def follow(self, created, method, path, **request):
        """The operation at the Location ``created`` answered with."""
        op = self.operations[(method, path)]
        pattern = re.sub(r"{(\w+)(?::\w+)?}", r"(?P<\1>[^/]+)", op.uri_template)
        match = re.fullmatch(pattern, created.headers["location"])
        assert match, (created.headers["location"], op.uri_template)
        return self(method, path, ids=match.groupdict(), **request)


@pytest.mark.timeout(600)  # the backup operations run a real backup, verification and restore
def test_every_operation_answers_a_real_request_with_its_documented_status(
        isolated_app, start_service, inventory, provisioner, rabbitmq_management, admin_token, rpc, settings,
        consumer_process, tmp_path, engine):
    from services.monitoring_ingest.service import MonitoringIngestService
    from services.notifier.service import NotifierService
    from services.updater.service import UpdaterService

    app, app_settings, heartbeats = isolated_app
    start_service(UpdaterService, {"updater": app_settings["updater"]})
    start_service(NotifierService, {"notifier": FAST_POLICY})
    start_service(MonitoringIngestService)
    start_service(service_class("backup"), {"backup": {"restic_cache_dir": str(tmp_path / "restic-cache")}})  # /healthz wants every registered service
    send = Walk(testing.TestClient(app), admin_token)

    # -- about the API: no token needed
    assert send("GET", "/healthz", headers={}).json["status"] == "ok"
    assert send("GET", "/healthz/services").json["status"] == "ok"
    send("GET", "/openapi.json", headers={})
    send("GET", "/asyncapi.json", headers={})
    send("GET", "/docs", headers={})
    send("GET", "/", headers={})

    # -- settings, users, tokens
    vhost = unquote(urlsplit(settings.amqp_uri).path.lstrip("/")) or "/"
    send("PATCH", "/settings", json={"rabbitmq": {"vhost": vhost}, "update": {"mode": "local"}})
    assert send("GET", "/settings").json["update"]["mode"] == "local"
    send("POST", "/settings/rabbitmq/test", json={"password": "guest"})
    user = send("POST", "/users", json={"name": "ops", "role": "operator", "password": "ops-password"}).json
    signed_in = send("POST", "/session", headers={}, json={"name": "ops", "password": "ops-password"})
    console = {"Cookie": f"steward_session={signed_in.cookies['steward_session'].value}"}
    send("GET", "/session", headers=console)
    changing = dict(console, **{"X-CSRF-Token": signed_in.json["csrf_token"]})
    send("POST", "/session/password", headers=changing,
         json={"current_password": "ops-password", "new_password": "ops-password-2"})
    send("DELETE", "/session", headers=changing)
    assert "ops" in {u["name"] for u in send("GET", "/users").json}
    send("GET", "/users/{user_id:id}", ids={"user_id": user["id"]})
    send("PATCH", "/users/{user_id:id}", ids={"user_id": user["id"]}, json={"role": "viewer"})
    token = send("POST", "/tokens", json={"name": "ci", "user": "ops"}).json
    send("GET", "/tokens")
    send("DELETE", "/tokens/{token_id:id}", ids={"token_id": token["id"]})
    send("DELETE", "/users/{user_id:id}", ids={"user_id": user["id"]})

    # -- servers: two that refuse SSH, so every task fails at once
    port = free_port()  # nothing listens on it once the probe is closed
    created = [send("POST", "/servers", json={"name": f"walk-{n}", "address": "127.0.0.1", "os": "ubuntu",
                                              "ssh_port": port, "ssh_password": "walk-secret"}) for n in (1, 2)]
    server = send.follow(created[0], "GET", "/servers/{server_id:id}").json
    ids = {"server_id": server["id"]}
    assert send("GET", "/servers", params={"search": "walk-"}).json["total"] == 2
    send("PATCH", "/servers/{server_id:id}", ids=ids, json={"ssh_user": "root"})

    # -- notifications: a webhook nobody answers, so deliveries end dead
    channel = send("POST", "/notifications/channels", json={
        "name": "hook", "kind": "webhook", "settings": {"url": f"http://127.0.0.1:{port}/hook",
                                                        "secret": "walk-signing-secret-0123"}})
    channel_ids = {"channel_id": send.follow(channel, "GET", "/notifications/channels/{channel_id:id}").json["id"]}
    send("GET", "/notifications/channels")
    send("PATCH", "/notifications/channels/{channel_id:id}", ids=channel_ids, json={"enabled": True})
    assert send("POST", "/notifications/channels/{channel_id:id}/test", ids=channel_ids).json["ok"] is False
    rule = send("POST", "/notifications/rules", json={"name": "all", "channel_ids": [channel_ids["channel_id"]]})
    rule_ids = {"rule_id": send.follow(rule, "GET", "/notifications/rules/{rule_id:id}").json["id"]}
    send("GET", "/notifications/rules")
    send("PATCH", "/notifications/rules/{rule_id:id}", ids=rule_ids, json={"min_severity": "info"})
    send("GET", "/notifications/templates")
    template = send("POST", "/notifications/templates", json={
        "event_type": "install_finished", "channel_kind": "webhook", "subject": "installed", "body": "done"})
    send.follow(template, "DELETE", "/notifications/templates/{template_id:id}")

    # -- monitoring
    for what in ("system", "dns", "records", "records/hits", "heartbeats"):
        send("GET", f"/monitoring/servers/{{server_id:id}}/{what}", ids=ids)
    send("PUT", "/monitoring/servers/{server_id:id}/retention", ids=ids,
         json={"raw_retention_minutes": None, "aggregated_retention_days": None})
    send("GET", "/monitoring/records/rps", params={"name": "pvverify.test"})

    # -- dead letters (two, as the consumer leaves them): one retried, one dropped
    letters = [refused_by_the_database(settings, server["id"]) for _ in range(2)]
    assert [i["id"] for i in send("GET", "/dead-letters").json["items"]][-2:] == letters
    send("GET", "/dead-letters/{letter_id:hexid}", ids={"letter_id": letters[0]})
    send("POST", "/dead-letters/{letter_id:hexid}/retry", ids={"letter_id": letters[0]})
    send("DELETE", "/dead-letters/{letter_id:hexid}", ids={"letter_id": letters[1]})

    # -- provisioning: a bundle (and the server's RabbitMQ user), then an install that cannot connect
    bundle = send("GET", "/servers/{server_id:id}/bundle", ids=ids)
    assert bundle.headers["content-type"] == "application/x-tar" and bundle.content
    agent = {"Authorization": f"Bearer {agent_token(rpc, server['id'])}"}
    beat = {"v": 1, "kind": "heartbeat", "server_id": server["id"], "seq": 1,
            "collected_at": datetime.now(timezone.utc).isoformat(), "data": {"agent_version": "1.0.0"}}
    send("POST", "/monitoring/heartbeat", headers=agent, json=beat)
    assert wait_for(lambda: heartbeats.get(no_ack=True), what="the published heartbeat").payload == beat
    install = send("POST", "/servers/{server_id:id}/actions/push-install", ids=ids)
    task_ids = {"task_id": install.json["id"]}
    wait_for(lambda: send.follow(install, "GET", "/tasks/{task_id:hexid}").json["state"] in FINISHED,
             what="the install to fail")
    assert send("GET", "/tasks/{task_id:hexid}/log", ids=task_ids).json["state"] == "failed"
    assert install.json["id"] in [t["id"] for t in send("GET", "/tasks", params={"kind": "install"}).json["items"]]
    send("DELETE", "/servers/{server_id:id}/host-key", ids=ids)
    assert send("GET", "/servers/{server_id:id}/inspection", ids=ids).json["broker_user_present"] is True
    send("GET", "/reconcile")
    send("POST", "/reconcile")

    # -- updates
    send("POST", "/versions", body=dns_image("1.0"), headers=dict(send.auth, **{"Content-Type": "application/gzip"}))
    assert [v["version"] for v in send("GET", "/versions").json["items"]] == ["1.0"]
    update = send("POST", "/servers/{server_id:id}/actions/push-update", ids=ids, json={})
    wait_for(lambda: send.follow(update, "GET", "/update-tasks/{task_id:hexid}").json["state"] in FINISHED,
             what="the update to fail")
    send("GET", "/update-tasks/{task_id:hexid}/log", ids={"task_id": update.json["task_id"]})
    rollout = send("POST", "/rollouts", json={"server_ids": [c.json["id"] for c in created], "batch_size": 1})
    rollout_ids = {"rollout_id": rollout.json["id"]}
    wait_for(lambda: send.follow(rollout, "GET", "/rollouts/{rollout_id:id}").json["state"] == "paused",
             what="the rollout to pause after its canary failed")
    send("GET", "/rollouts")
    send("POST", "/rollouts/{rollout_id:id}/actions/resume", ids=rollout_ids)
    send("POST", "/rollouts/{rollout_id:id}/actions/cancel", ids=rollout_ids)
    wait_for(lambda: all(task["state"] in FINISHED for c in created for task in send(
        "GET", "/servers/{server_id:id}/update-tasks", ids={"server_id": c.json["id"]}).json),
        what="the rollout's last task to end")
    run = send("POST", "/servers/{server_id:id}/actions/diagnostics", ids=ids)  # a task: 202, then followed
    run_ids = dict(ids, run_id=run.json["id"])
    wait_for(lambda: send.follow(run, "GET", "/tasks/{task_id:hexid}").json["state"] in FINISHED,
             what="the diagnostics run to end")
    checks = send("GET", "/servers/{server_id:id}/diagnostics/{run_id:hexid}", ids=run_ids).json["checks"]
    assert [(c["name"], c["status"]) for c in checks][0] == ("ssh", "failed")
    send("GET", "/servers/{server_id:id}/diagnostics/{run_id:hexid}/log", ids=run_ids)
    assert [r["id"] for r in send("GET", "/servers/{server_id:id}/diagnostics", ids=ids).json] == [run.json["id"]]
    assert [t["id"] for t in send("GET", "/tasks", params={"kind": "diagnostics", "server_id": server["id"]}).json[
        "items"]] == [run.json["id"]]
    # A queued task (kind probe: no replica runs it, so it stays queued) is cancelled at once.
    probe = TaskStore(sessionmaker(bind=engine), updater_models.Task, updater_models.TaskStep).create(
        "probe", server["id"], server["name"], {}, "admin", outcome={})
    assert send("POST", "/tasks/{task_id:hexid}/cancel", ids={"task_id": probe["id"]}).json["state"] == "cancelled"

    # -- managed backups: a backup-server daemon on this machine, enrolled as the bundle would have it
    send("PATCH", "/settings", json={"backup": {"password": "walk backup password"}})
    holder = send("POST", "/servers", json={"name": "walk-backup", "address": "127.0.0.1", "os": "ubuntu",
                                            "components": ["backup"], "ssh_port": port, "ssh_password": "x"}).json
    with enrolled_daemon(settings.secret_key, holder["id"], tmp_path / "daemon") as daemon:
        registered = send("POST", "/backup-servers", json={"server_id": holder["id"], "port": daemon.port})
        backup_server_ids = {"backup_server_id": send.follow(registered, "GET", "/backup-servers/{backup_server_id:id}").json["id"]}
        send("GET", "/backup-servers")
        send("PATCH", "/backup-servers/{backup_server_id:id}", ids=backup_server_ids, json={"include_monitoring_raw": True})
        send("PUT", "/backup-servers/{backup_server_id:id}/retention-policy", ids=backup_server_ids, json={"keep_last": 3})
        assert send("GET", "/backup-servers/{backup_server_id:id}/retention-policy", ids=backup_server_ids).json["keep_last"] == 3

        def finished(started):
            return wait_for(lambda: (task := send.follow(started, "GET", "/tasks/{task_id:hexid}").json)["state"] in FINISHED
                            and task, timeout=120, what=f"task {started.json['id']}")

        assert finished(send("POST", "/backups", json=dict(backup_server_ids)))["state"] == "succeeded"
        [stored] = send("GET", "/backups", params=dict(backup_server_ids)).json
        backup_ids = {"backup_id": stored["id"]}
        send("GET", "/backups/{backup_id:hexid}", ids=backup_ids)
        assert finished(send("POST", "/backups/{backup_id:hexid}/actions/verify", ids=backup_ids))["state"] == "succeeded"
        scratch = f"walk_restore_{uuid.uuid4().hex[:8]}"
        try:
            restored = send("POST", "/backups/{backup_id:hexid}/actions/restore", ids=backup_ids, json={"into": scratch})
            assert finished(restored)["state"] == "succeeded"
        finally:
            drop_databases(settings.database_url, scratch)
        assert send("POST", "/backup-servers/{backup_server_id:id}/actions/prune", ids=backup_server_ids).json["remove"] == []
        schedule = send("POST", "/backup-schedules", json=dict(backup_server_ids, cron="0 3 * * *")).json
        assert [s["id"] for s in send("GET", "/backup-schedules").json] == [schedule["id"]]
        send("DELETE", "/backup-schedules/{schedule_id:id}", ids={"schedule_id": schedule["id"]})
        assert send("GET", "/backup-key").json["wrapped_secret"]
        send("PUT", "/backup-servers/{backup_server_id:id}/retention-policy", ids=backup_server_ids, json={})
        send("DELETE", "/backups/{backup_id:hexid}", ids=backup_ids)
        send("DELETE", "/backup-servers/{backup_server_id:id}", ids=backup_server_ids)

    # -- the delivery log: what the failed tasks told the dead webhook
    dead = wait_for(lambda: send("GET", "/notifications/deliveries", params={"status": "dead"}).json,
                    timeout=60, what="a dead delivery")
    delivery_ids = {"delivery_id": dead[0]["id"]}
    send("GET", "/notifications/deliveries/{delivery_id:id}", ids=delivery_ids)
    assert send("POST", "/notifications/deliveries/{delivery_id:id}/retry", ids=delivery_ids).json["status"] == "pending"
    send("DELETE", "/notifications/rules/{rule_id:id}", ids=rule_ids)
    send("DELETE", "/notifications/channels/{channel_id:id}", ids=channel_ids)

    # -- and away: something had been installed (an install task, a RabbitMQ user), so 200 with a report
    report = send("DELETE", "/servers/{server_id:id}", ids=ids).json
    assert report["cleanup"]["rabbitmq_user_removed"] is True and report["cleanup"]["problems"]

    assert send.sent == set(send.operations), "operations without a request here"
