"""Role × route × ownership: every operation of the route table, called by every kind of caller, answers as
its ``access`` says (gateway/routes.py; the rules are shared/authz.py's).

The callers: no token, a viewer, an operator who owns nothing here, the server user of the target server (an
operator), an admin, the target server's agent and another server's agent. The matrix is generated from
OPERATIONS, and each operation needs a sample request below, so a new route cannot go untested: without an
``access`` the app does not start, without a sample this test fails.
"""
import contextlib
import itertools
import re
import socket

import pytest
from falcon import testing

from shared.config import service_class
from gateway.routes import OPERATIONS, Access
from tests.monitoring.helpers import refused_by_the_database
from tests.backup.daemon_lab import drop_databases, enrolled_daemon
from tests.updater.images import dns_image
from tests.conftest import agent_token
from tests.waiting import wait_for

CALLERS = ("anonymous", "viewer", "operator", "server_user", "admin", "own_agent", "other_agent")
USERS = ("viewer", "operator", "server_user", "admin")
ALLOWED = {
    Access.ANYONE: set(CALLERS),
    Access.VIEWER: set(USERS),
    Access.OPERATOR: {"operator", "server_user", "admin"},
    Access.ADMIN: {"admin"},
    Access.SELF: {"server_user", "admin"},  # the sample's object belongs to the server user
    Access.SERVER_USER: {"server_user", "admin"},
    Access.SERVER_USER_OR_AGENT: {"server_user", "admin", "own_agent"},
    Access.OWN_AGENT: {"own_agent"},
}
_versions = itertools.count(1)
_names = itertools.count(1)


def _closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class World:
    """The objects the samples act on: a target server owned by the server user, and one of everything else."""

    def __init__(self, client, admin_token, rpc, secret_key, directory, daemons):
        self.client, self.rpc = client, rpc
        self.secret_key, self.directory, self.daemons = secret_key, directory, daemons
        self.port = _closed_port()  # SSH to the servers is refused at once: every task ends quickly
        self.tokens = {"admin": admin_token}
        for name, role in (("viewer", "viewer"), ("operator", "operator"), ("server_user", "operator")):
            user = self.admin("POST", "/users", json={"name": f"matrix-{name}", "role": role,
                                                      "password": "matrix-password"})
            self.tokens[name] = self.admin("POST", "/tokens", json={"user": user["name"]})["token"]
            setattr(self, f"{name}_id", user["id"])
        self.server = self.new_server()
        # The server user's too: still pending in the rollout after its canary failed and two resumes.
        self.pending = [self.new_server() for _ in range(3)]
        self.others = self.new_server(owner="matrix-operator")
        self.channel = self.admin("POST", "/notifications/channels", json={
            "name": "matrix-hook", "kind": "webhook",
            "settings": {"url": f"http://127.0.0.1:{self.port}/", "secret": "matrix-signing-secret"}})
        self.rule = self.admin("POST", "/notifications/rules", json={"name": "matrix-all",
                                                                       "channel_ids": [self.channel["id"]]})
        self.template = self.new_template()
        self.admin("PATCH", "/settings", json={"update": {"mode": "local"}})
        self.admin("POST", "/versions", body=dns_image("0.1"), headers={"Content-Type": "application/gzip"})
        self.install = self.admin("POST", f"/servers/{self.server['id']}/actions/push-install")
        self.update = self.admin("POST", f"/servers/{self.server['id']}/actions/push-update", json={})
        self.run = self.admin("POST", f"/servers/{self.server['id']}/actions/diagnostics")
        self.rollout = self.admin("POST", "/rollouts", json={
            "server_ids": [self.server["id"], *(s["id"] for s in self.pending)], "canary_size": 1, "batch_size": 1})
        wait_for(lambda: self.admin("GET", f"/rollouts/{self.rollout['id']}")["state"] == "paused",
                 timeout=60, what="the rollout to pause after its canary failed")
        self.delivery = wait_for(lambda: self.admin("GET", "/notifications/deliveries"), timeout=30,
                                 what="a delivery of the server events")[0]
        # Managed backups: backup-server daemons on this machine, one enrolled with a stored backup.
        self.admin("PATCH", "/settings", json={"backup": {"password": "matrix backup password"}})
        self.backup_server = self.new_backup_server()
        self.backup = self.new_backup()
        self.schedule = self.new_schedule()

    def new_backup_server(self, register=True):
        """A managed server with the backup component and its daemon; registered as a backup server, or
        (``register=False``) the body that registers it."""
        holder = self.admin("POST", "/servers", json={"name": f"matrix-backup-{next(_names)}", "address": "127.0.0.1",
                                                      "os": "ubuntu", "components": ["backup"], "ssh_port": self.port,
                                                      "ssh_password": "pw"})
        daemon = self.daemons.enter_context(enrolled_daemon(self.secret_key, holder["id"],
                                                            self.directory / f"daemon-{holder['id']}"))
        body = {"server_id": holder["id"], "port": daemon.port}
        return self.admin("POST", "/backup-servers", json=body) if register else body

    def quiet(self):
        """No backup task queued or running (restic's lock would refuse a prune or delete meanwhile)."""
        wait_for(lambda: not any(self.admin("GET", "/tasks", params={"state": state})["items"]
                                 for state in ("queued", "running")), timeout=120, what="backup tasks to end")

    def new_backup(self):
        self.quiet()
        task = self.admin("POST", "/backups", json={"backup_server_id": self.backup_server["id"]})
        wait_for(lambda: self.admin("GET", f"/tasks/{task['id']}")["state"] in ("succeeded", "failed"), timeout=120,
                 what="the backup")
        return next(b for b in self.admin("GET", "/backups") if b["task_id"] == task["id"])

    def new_schedule(self):
        return self.admin("POST", "/backup-schedules", json={"backup_server_id": self.backup_server["id"],
                                                             "cron": "0 3 * * *"})

    def call(self, caller, method, path, **request):
        headers = dict(request.pop("headers", {}))
        if caller != "anonymous":
            headers["Authorization"] = f"Bearer {self.tokens[caller]}"
        return self.client.simulate_request(method, "/api/v2" + path if not (path == "/" or path.startswith("/healthz")) else path,
                                            headers=headers, **request)

    def admin(self, method, path, **request):
        answer = self.call("admin", method, path, **request)
        assert answer.status_code < 300, (method, path, answer.text)
        return answer.json

    def new_server(self, owner="matrix-server_user"):
        return self.admin("POST", "/servers", json={"name": f"matrix-{next(_names)}", "address": "127.0.0.1",
                                                    "os": "ubuntu", "ssh_port": self.port, "ssh_password": "pw",
                                                    "server_user": owner})

    def new_template(self):
        return self.admin("POST", "/notifications/templates", json={
            "event_type": "disk_low", "channel_kind": "webhook", "subject": "low", "body": "disk"})

    def issue_agent_tokens(self, server):
        """Agent tokens of ``server`` and of another server, issued afresh (a bundle replaces them)."""
        self.tokens["own_agent"] = agent_token(self.rpc, server["id"])
        self.tokens["other_agent"] = agent_token(self.rpc, self.others["id"])


def _sample(world, op, fresh):
    """(path, request) for ``op``; ``fresh``: the sample may destroy or use up what it acts on."""
    server = world.new_server() if fresh and op.method == "DELETE" and op.path == "/servers/{server_id:id}" \
        else world.server
    ids = {
        "server_id": server["id"], "user_id": world.server_user_id, "channel_id": world.channel["id"],
        "rule_id": world.rule["id"], "template_id": world.template["id"], "delivery_id": world.delivery["id"],
        "rollout_id": world.rollout["id"], "run_id": world.run["id"], "task_id": world.install["id"],
    }
    if op.path.startswith("/update-tasks/"):
        ids["task_id"] = world.update["task_id"]
    if fresh and op.method == "DELETE":
        if "{user_id" in op.path:
            ids["user_id"] = world.admin("POST", "/users", json={"name": f"matrix-gone-{next(_names)}"})["id"]
        if "{token_id" in op.path:
            ids["token_id"] = world.admin("POST", "/tokens", json={"user": "matrix-server_user"})["id"]
        if "{channel_id" in op.path:
            ids["channel_id"] = world.admin("POST", "/notifications/channels", json={
                "name": f"matrix-gone-{next(_names)}", "kind": "chat", "settings": {"url": "http://127.0.0.1:9/"}})["id"]
        if "{rule_id" in op.path:
            ids["rule_id"] = world.admin("POST", "/notifications/rules", json={
                "name": f"matrix-gone-{next(_names)}", "channel_ids": [world.channel["id"]]})["id"]
        if "{template_id" in op.path:
            ids["template_id"] = world.new_template()["id"]
    if "{letter_id" in op.path:  # a retry or drop uses one up: each call its own
        ids["letter_id"] = refused_by_the_database(world.settings, server["id"])
    if op.path.startswith(("/backup-servers/{", "/backups/{", "/backup-schedules/{")):
        ids.update(backup_server_id=world.backup_server["id"], backup_id=world.backup["id"],
                   schedule_id=world.schedule["id"])
        if fresh and op.method == "DELETE":
            if op.path == "/backup-servers/{backup_server_id:id}":
                ids["backup_server_id"] = world.new_backup_server()["id"]
            if op.path == "/backup-schedules/{schedule_id:id}":
                ids["schedule_id"] = world.new_schedule()["id"]
            if op.path == "/backups/{backup_id:hexid}":
                ids["backup_id"] = world.new_backup()["id"]
                world.quiet()
    if "{token_id" in op.path and not fresh:
        ids["token_id"] = world.admin("POST", "/tokens", json={"user": "matrix-server_user"})["id"]
    path = re.sub(r"{(\w+):\w+}", lambda m: str(ids[m[1]]), op.path)
    world.issue_agent_tokens(server)
    unique = next(_names)
    bodies = {
        ("POST", "/servers"): {"name": f"matrix-new-{unique}", "address": "127.0.0.1", "os": "ubuntu"},
        ("PATCH", "/servers/{server_id:id}"): {"ssh_port": world.port},
        ("PATCH", "/settings"): {"monitoring": {"dns_monitoring": True}},
        ("POST", "/settings/rabbitmq/test"): {"host": "127.0.0.1", "port": world.port},
        ("POST", "/users"): {"name": f"matrix-new-{unique}"},
        ("POST", "/session"): {"name": "matrix-viewer", "password": "matrix-password"},
        ("POST", "/session/password"): {"current_password": "matrix-password", "new_password": "matrix-password"},
        ("PATCH", "/users/{user_id:id}"): {"groups": ["servers"]},
        ("POST", "/tokens"): {"name": "matrix"},
        ("POST", "/notifications/channels"): {"name": f"matrix-new-{unique}", "kind": "chat",
                                              "settings": {"url": "http://127.0.0.1:9/"}},
        ("PATCH", "/notifications/channels/{channel_id:id}"): {"enabled": True},
        ("POST", "/notifications/rules"): {"name": f"matrix-new-{unique}", "channel_ids": [world.channel["id"]]},
        ("PATCH", "/notifications/rules/{rule_id:id}"): {"name": "matrix-all", "channel_ids": [world.channel["id"]]},
        ("POST", "/notifications/templates"): {"event_type": "disk_low", "channel_kind": "webhook", "subject": "s",
                                               "body": "b"},
        ("POST", "/monitoring/heartbeat"): {"v": 1, "kind": "heartbeat", "server_id": server["id"], "seq": unique,
                                            "collected_at": "2026-01-01T00:00:00+00:00",
                                            "data": {"agent_version": "1.0.0"}},
        ("PUT", "/monitoring/servers/{server_id:id}/retention"): {"raw_retention_minutes": 600},
        ("POST", "/servers/{server_id:id}/actions/push-update"): {},
        ("POST", "/rollouts"): {"server_ids": [server["id"]]},
        ("POST", "/backup-servers"): {"server_id": server["id"]},  # refused before any enrollment
        ("PATCH", "/backup-servers/{backup_server_id:id}"): {"include_monitoring_raw": False},
        ("PUT", "/backup-servers/{backup_server_id:id}/retention-policy"): {},
        ("POST", "/backups"): {"backup_server_id": world.backup_server["id"]},
        ("POST", "/backups/{backup_id:hexid}/actions/restore"): {"into": f"matrix_restore_{unique}"},
        ("POST", "/backup-schedules"): {"backup_server_id": world.backup_server["id"], "cron": "0 3 * * *"},
    }
    if fresh and (op.method, op.path) == ("POST", "/backup-servers"):
        bodies[(op.method, op.path)] = world.new_backup_server(register=False)
    request = {}
    if (op.method, op.path) in bodies:
        request["json"] = bodies[(op.method, op.path)]
    elif op.body and op.body_required:
        pytest.fail(f"no sample body for {op.method} {op.path}: add one to the matrix test")
    if (op.method, op.path) == ("POST", "/versions"):
        request = {"body": dns_image(f"1.{next(_versions)}"), "headers": {"Content-Type": "application/gzip"}}
    if (op.method, op.path) == ("GET", "/monitoring/records/rps"):
        request["params"] = {"name": "pvverify.test"}
    return path, request


def _verdict(op, caller, status):
    """None when ``status`` is what ``op``'s access says ``caller`` gets, else what is wrong."""
    if status >= 500:
        return f"a {status}"
    if caller in ALLOWED[op.access]:
        return None if status not in (401, 403, 404) else f"refused ({status}) though allowed"
    if caller == "anonymous":
        return None if status == 401 else f"{status} instead of 401"
    hidden = op.access is Access.SELF and caller in USERS
    return None if status == 403 or (hidden and status == 404) else f"{status} instead of 403"


@pytest.mark.timeout(600)  # the backup samples run real backups, verifications and restores
def test_every_operation_lets_in_exactly_the_callers_its_access_names(
        isolated_app, start_service, inventory, provisioner, rabbitmq_management, admin_token, rpc, consumer_process,
        settings, tmp_path):
    from services.monitoring_ingest.service import MonitoringIngestService
    from services.notifier.service import NotifierService
    from services.updater.service import UpdaterService
    from tests.notifier.conftest import FAST_POLICY

    app, app_settings, _ = isolated_app
    start_service(UpdaterService, {"updater": app_settings["updater"]})
    start_service(NotifierService, {"notifier": FAST_POLICY})
    start_service(MonitoringIngestService)
    start_service(service_class("backup"), {"backup": {"restic_cache_dir": str(tmp_path / "restic-cache")}})
    with contextlib.ExitStack() as daemons:
        try:
            world = World(testing.TestClient(app), admin_token, rpc, settings.secret_key, tmp_path, daemons)
            world.settings = app_settings
            _matrix(world)
            world.quiet()  # the backups, verifications and restores the samples started end before their daemons
        finally:
            drop_databases(settings.database_url, "matrix_restore_")


def _matrix(world):

    mismatches, cases = [], 0
    for op in OPERATIONS:
        # Refused callers first, on the shared objects: nothing they try may change them.
        order = sorted(CALLERS, key=lambda caller: caller in ALLOWED[op.access])
        for caller in order:
            path, request = _sample(world, op, fresh=caller in ALLOWED[op.access])
            answer = world.call(caller, op.method, path, **request)
            cases += 1
            problem = _verdict(op, caller, answer.status_code)
            if problem:
                mismatches.append(f"{op.method} {op.path} as {caller}: {problem}: {answer.text[:200]}")
    print(f"authorization matrix: {len(OPERATIONS)} operations x {len(CALLERS)} callers = {cases} cases, "
          f"{len(mismatches)} mismatches")
    assert not mismatches, "\n".join(mismatches)
    assert cases == len(OPERATIONS) * len(CALLERS)
