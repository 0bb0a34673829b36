"""Secrets cross the broker only sealed: an operator's day with every kind of secret, and every RPC request,
reply and event of it read off the real broker, where no secret's plaintext may appear."""
import base64
import binascii
import contextlib
import io
import json
import secrets
import tarfile
import uuid

import pytest
import requests
from falcon import testing
from kombu import Connection, Exchange, Queue, binding

from gateway.routes import PREFIX
from shared.config import registered_services
from shared.rpc import RPC_EXCHANGE
from tests.conftest import MANAGEMENT_API
from tests.notifier.conftest import receiver  # noqa: F401 (a fixture)
from tests.provisioner.conftest import push_install, register, wait_for_task
from tests.updater.conftest import Registry


@contextlib.contextmanager
def control_plane_traffic(settings):
    """Yields drain(): the body of every RPC request and reply (replies go to the same exchange, by the caller's
    reply key) and every event on the broker so far, as bytes, with any base64 inside them decoded beside it."""
    connection = Connection(settings.amqp_uri)
    exchanges = [RPC_EXCHANGE] + [f"{service}.events" for service in registered_services()]
    queue = Queue(f"tests.traffic-{uuid.uuid4().hex[:8]}", auto_delete=True, durable=False,
                  bindings=[binding(Exchange(name, type="topic", durable=True), routing_key="#") for name in exchanges])
    bound = queue(connection.default_channel)
    for name in exchanges:
        Exchange(name, type="topic", durable=True)(connection.default_channel).declare()
    bound.declare()
    seen = []

    def drain():
        while (message := bound.get(no_ack=True)) is not None:
            drain.routing_keys.add(message.delivery_info["routing_key"])
            seen.append(message.body if isinstance(message.body, bytes) else message.body.encode())
            seen.extend(_decoded(json.loads(seen[-1])))
        return seen

    drain.routing_keys = set()

    try:
        yield drain
    finally:
        bound.delete()
        connection.release()


def _decoded(value):
    """What base64 strings inside a JSON value hold (a setup bundle travels as base64 of its tar)."""
    if isinstance(value, dict):
        return [found for item in value.values() for found in _decoded(item)]
    if isinstance(value, list):
        return [found for item in value for found in _decoded(item)]
    if isinstance(value, str) and len(value) > 64:
        try:
            return [base64.b64decode(value, validate=True)]
        except (binascii.Error, ValueError):
            return []
    return []


@pytest.fixture
def broker_admin(rabbitmq_management, settings):
    """A broker administrator of the test's own, with a password nothing else uses, for the admin settings."""
    name, password = f"tests-admin-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
    vhost = requests.utils.quote(settings.amqp_uri.rsplit("/", 1)[1] or "/", safe="")
    auth = ("guest", "guest")
    requests.put(f"{MANAGEMENT_API}/users/{name}", json={"password": password, "tags": "administrator"},
                 auth=auth, timeout=10).raise_for_status()
    requests.put(f"{MANAGEMENT_API}/permissions/{vhost}/{name}", json={"configure": ".*", "write": ".*", "read": ".*"},
                 auth=auth, timeout=10).raise_for_status()
    yield name, password
    requests.delete(f"{MANAGEMENT_API}/users/{name}", auth=auth, timeout=10)


@pytest.fixture
def registry():
    registry = Registry(tokens={"dns": secrets.token_hex(20)})
    yield registry
    registry.close()


@pytest.fixture
def other_services(start_service, settings, registry, tmp_path):
    from services.monitoring_ingest.service import MonitoringIngestService
    from services.notifier.service import NotifierService
    from services.updater.service import UpdaterService

    start_service(UpdaterService, {"updater": dict(settings.section("updater"), storage_dir=str(tmp_path / "images"),
                                                   registry_url=registry.url)})
    start_service(NotifierService)
    start_service(MonitoringIngestService)


def _agent_secrets(tar_bytes):
    """The agent token and broker password a setup bundle holds."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("config/agent.json"))
        config = json.load(tar.extractfile(member))
    return _agent_config_secrets(config)


def _agent_config_secrets(config):
    found = [value for key, value in config.items() if "token" in key and isinstance(value, str)]
    found += [value["password"] for value in config.values() if isinstance(value, dict) and value.get("password")]
    assert found, config
    return found


def test_no_secret_crosses_the_broker_in_plain_text(settings, api, lab, broker_admin, registry, receiver,  # noqa: F811
                                                     other_services, admin_token):
    admin_user, admin_password = broker_admin
    backup_password, hook_secrets = secrets.token_urlsafe(20), [secrets.token_hex(16), secrets.token_hex(16)]
    console_password = secrets.token_urlsafe(16)
    repository_token = registry.tokens["dns"]
    known = [admin_token, lab.root_password, admin_password, backup_password, repository_token, *hook_secrets,
             console_password]
    # A private key travels with its line breaks escaped: look for a run of its body.
    known.append(lab.private_key.splitlines()[2][:40])

    with control_plane_traffic(settings) as traffic:
        # Settings with every kind of secret, read back, and the broker credentials tried.
        changed = api.simulate_patch(f"{PREFIX}/settings", json={
            "rabbitmq": {"user": admin_user, "password": admin_password},
            "update": {"mode": "internet", "repository_tokens": {"dns": repository_token}},
            "backup": {"password": backup_password}})
        assert changed.status_code == 200, changed.text
        assert changed.json["rabbitmq"]["password_set"] and "password" not in changed.json["rabbitmq"]
        tried = api.simulate_post(f"{PREFIX}/settings/rabbitmq/test",
                                  json={"host": "127.0.0.1", "user": admin_user, "password": admin_password})
        assert tried.status_code == 200 and tried.json["ok"], tried.text
        assert api.simulate_get(f"{PREFIX}/settings").status_code == 200

        # A server with an SSH password, push-installed (the provisioner makes its broker user with the
        # admin credentials), its bundle downloaded in pull mode (monitoring-ingest gets the agent token to
        # fetch with), then a key instead of the password.
        server = register(api, lab)
        finished, _ = wait_for_task(api, push_install(api, server["id"])["id"], timeout=300)
        assert finished["state"] == "succeeded", finished["error"]
        known += [s for path in lab.root.rglob("agent.json") for s in _agent_config_secrets(json.loads(path.read_text()))]
        pull = api.simulate_patch(f"{PREFIX}/servers/{server['id']}", json={"communication_type": "pull"})
        assert pull.status_code == 200, pull.text
        bundle = api.simulate_get(f"{PREFIX}/servers/{server['id']}/bundle")
        assert bundle.status_code == 200, bundle.text
        known += _agent_secrets(bundle.content)
        keyed = api.simulate_patch(f"{PREFIX}/servers/{server['id']}",
                                   json={"ssh_user": lab.user, "ssh_private_key": lab.private_key})
        assert keyed.status_code == 200, keyed.text

        # A webhook channel, its secret changed, and a test message signed with it.
        channel = api.simulate_post(f"{PREFIX}/notifications/channels", json={
            "name": "hook", "kind": "webhook", "settings": {"url": receiver.url, "secret": hook_secrets[0]}})
        assert channel.status_code == 201, channel.text
        path = f"{PREFIX}/notifications/channels/{channel.json['id']}"
        assert api.simulate_patch(path, json={"settings": {"secret": hook_secrets[1]}}).status_code == 200
        sent = api.simulate_post(f"{path}/test")
        assert sent.status_code == 200 and sent.json["ok"], sent.text

        # A viewer with a console password signs in and out (a session token in a cookie), then, with a token
        # made through the API, lists the versions: the updater asks the registry with the repository token.
        viewer = api.simulate_post(f"{PREFIX}/users", json={"name": "watcher", "role": "viewer",
                                                            "password": console_password})
        assert viewer.status_code == 201, viewer.text
        browser = testing.TestClient(api.app)
        signed_in = browser.simulate_post(f"{PREFIX}/session", json={"name": "watcher", "password": console_password})
        assert signed_in.status_code == 200, signed_in.text
        known.append(signed_in.cookies["steward_session"].value)
        cookie = {"Cookie": f"steward_session={known[-1]}"}
        assert browser.simulate_get(f"{PREFIX}/session", headers=cookie).json["user"]["name"] == "watcher"
        signed_out = browser.simulate_delete(f"{PREFIX}/session",
                                             headers=dict(cookie, **{"X-CSRF-Token": signed_in.json["csrf_token"]}))
        assert signed_out.status_code == 204, signed_out.text
        assert browser.simulate_get(f"{PREFIX}/session", headers=cookie).status_code == 401
        token = api.simulate_post(f"{PREFIX}/tokens", json={"name": "watching", "user": "watcher"})
        assert token.status_code == 201, token.text
        known.append(token.json["token"])
        versions = api.simulate_get(f"{PREFIX}/versions", params={"component": "dns"}, headers={"Authorization": f"Bearer {token.json['token']}"})
        assert versions.status_code == 200, versions.text
        assert registry.request_headers[-1]["Authorization"] == f"Bearer {repository_token}"

        bodies = traffic()

    assert len(bodies) > 50, "the traffic capture saw too little to judge"
    assert {"inventory.create_server", "inventory.server_credentials", "monitoring_ingest.set_pull_target",
            "server_created", "install_finished"} <= traffic.routing_keys, traffic.routing_keys
    leaked = {secret[:6] + "...": sum(secret.encode() in body for body in bodies) for secret in known}
    assert not any(leaked.values()), f"messages carrying each secret in plain text: {leaked}"
