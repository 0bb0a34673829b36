"""The inventory service in a real nameko container on the real broker and database."""
import pytest
from sqlalchemy import text

from shared.config import amqp_vhost
from shared.errors import DuplicateName, NotAuthenticated, PermissionDenied, ServerNotFound, ValidationFailed
from shared.events import load_event
from shared.crypto import RABBITMQ_PASSWORD, REPOSITORY_TOKEN
from shared.ssh import open_credentials
from tests.conftest import TEST_BOX, agent_token, authenticate, create_token
from tests.events import capture_events, event_sender
from tests.waiting import wait_for

NEW_SERVER = {"name": "dns-1", "address": "10.0.0.1", "os": "ubuntu", "ssh_password": "hunter2-secret"}


@pytest.fixture
def inventory_events(settings):
    """Every event the inventory emits during the test, read from a queue of the test's own."""
    with capture_events(settings, "inventory") as drain:
        yield drain


def _user(rpc, admin, name, role):
    rpc.call("inventory", "create_user", admin, {"name": name, "role": role})
    token = create_token(rpc, admin, {"user": name})["token"]
    return authenticate(rpc, token)


def test_create_server_stores_sealed_secret_and_emits_event(rpc, admin, engine, inventory_events):
    server = rpc.call("inventory", "create_server", admin, NEW_SERVER)

    assert server["name"] == "dns-1" and server["state"] == "unknown"
    assert server["ssh_auth"] == "password"
    assert "ssh_password" not in server and "hunter2-secret" not in str(server)
    assert server["server_user"].startswith("srv-")
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT ssh_password_sealed FROM inventory.servers")).scalar_one()
    assert stored and "hunter2-secret" not in stored
    credentials = rpc.call("inventory", "server_credentials", server["id"])
    assert "hunter2-secret" not in str(credentials)  # sealed for the broker, opened where it connects
    assert open_credentials(TEST_BOX, credentials)["password"] == "hunter2-secret"

    events = inventory_events.until("server_created")  # the outbox publishes after the commit
    assert [name for name, _ in events] == ["server_created"]
    payload = load_event("server_created", events[0][1])
    assert payload["server"]["id"] == server["id"]
    assert "hunter2" not in str(events)


def test_server_user_is_in_the_servers_group(rpc, admin):
    server = rpc.call("inventory", "create_server", admin, NEW_SERVER)
    users = {u["name"]: u for u in rpc.call("inventory", "list_users", admin)}
    assert users[server["server_user"]]["groups"] == ["servers"]


def test_named_server_user_joins_the_servers_group(rpc, admin):
    rpc.call("inventory", "create_user", admin, {"name": "alice", "role": "operator"})
    server = rpc.call("inventory", "create_server", admin, dict(NEW_SERVER, server_user="alice"))
    assert server["server_user"] == "alice"
    users = {u["name"]: u for u in rpc.call("inventory", "list_users", admin)}
    assert "servers" in users["alice"]["groups"]


def test_duplicate_name_any_case_is_a_conflict_and_keeps_the_first(rpc, admin):
    first = rpc.call("inventory", "create_server", admin, NEW_SERVER)
    with pytest.raises(DuplicateName) as err:
        rpc.call("inventory", "create_server", admin, dict(NEW_SERVER, name="DNS-1", address="10.0.0.2"))
    assert "name" in err.value.details
    page = rpc.call("inventory", "list_servers", admin, {})
    assert page["total"] == 1 and page["items"][0]["id"] == first["id"]


def test_invalid_input_names_each_field(rpc, admin):
    with pytest.raises(ValidationFailed) as err:
        rpc.call("inventory", "create_server", admin, {"name": "x", "address": "not an address", "os": "win", "extra": 1})
    assert set(err.value.details) == {"address", "os", "extra"}


def test_only_the_server_user_or_an_admin_may_change_a_server(rpc, admin):
    owner = _user(rpc, admin, "owner", "operator")
    other = _user(rpc, admin, "other", "operator")
    viewer = _user(rpc, admin, "watcher", "viewer")
    server = rpc.call("inventory", "create_server", admin, dict(NEW_SERVER, server_user="owner"))

    with pytest.raises(PermissionDenied):
        rpc.call("inventory", "update_server", other, server["id"], {"address": "10.9.9.9"})
    with pytest.raises(PermissionDenied):
        rpc.call("inventory", "delete_server", other, server["id"])
    with pytest.raises(PermissionDenied):
        rpc.call("inventory", "create_server", viewer, dict(NEW_SERVER, name="v"))

    changed = rpc.call("inventory", "update_server", owner, server["id"], {"address": "10.9.9.9"})
    assert changed["address"] == "10.9.9.9"
    assert rpc.call("inventory", "get_server", viewer, server["id"])["address"] == "10.9.9.9"
    rpc.call("inventory", "update_server", admin, server["id"], {"ssh_port": 2222})


def test_update_emits_what_changed_and_replaces_the_other_secret(rpc, admin, inventory_events):
    server = rpc.call("inventory", "create_server", admin, NEW_SERVER)
    updated = rpc.call("inventory", "update_server", admin, server["id"], {"ssh_private_key": "-----KEY-----", "os": "centos"})
    assert updated["ssh_auth"] == "key" and updated["os"] == "centos"
    assert open_credentials(TEST_BOX, rpc.call("inventory", "server_credentials", server["id"]))["password"] is None
    events = dict(inventory_events.until("server_updated"))
    assert sorted(events["server_updated"]["changed"]) == ["os", "ssh_private_key"]


def test_delete_removes_the_generated_server_user_and_its_tokens(rpc, admin, inventory_events):
    server = rpc.call("inventory", "create_server", admin, NEW_SERVER)
    server_user_token = create_token(rpc, admin, {"user": server["server_user"]})["token"]
    rpc.call("inventory", "delete_server", admin, server["id"])

    with pytest.raises(ServerNotFound):
        rpc.call("inventory", "get_server", admin, server["id"])
    with pytest.raises(NotAuthenticated):
        authenticate(rpc, server_user_token)
    events = inventory_events.until("tokens_revoked")
    assert [name for name, _ in events] == ["server_created", "server_deleted", "tokens_revoked"]
    revoked = events[-1][1]  # every gateway drops what it cached of the server's agent and of its server user
    assert revoked["reason"] == "server_deleted" and revoked["server_ids"] == [server["id"]]
    assert len(revoked["user_ids"]) == 1 and revoked["user_ids"] != [admin["user_id"]]  # the generated user


def test_list_searches_sorts_filters_and_pages(rpc, admin):
    for name in ["alpha-dns", "Beta-DNS", "gamma-dhcp", "delta-dns"]:
        rpc.call("inventory", "create_server", admin, dict(NEW_SERVER, name=name))
    page = rpc.call("inventory", "list_servers", admin, {"search": "DNS", "sort": "-name", "per_page": "2"})
    assert page["total"] == 3
    assert [row["name"] for row in page["items"]] == ["delta-dns", "Beta-DNS"]
    second = rpc.call("inventory", "list_servers", admin, {"search": "dns", "sort": "-name", "per_page": 2, "page": 2})
    assert [row["name"] for row in second["items"]] == ["alpha-dns"]
    assert rpc.call("inventory", "list_servers", admin, {"search": "%"})["total"] == 0  # a literal, not a wildcard
    assert rpc.call("inventory", "list_servers", admin, {"state": "running"})["total"] == 0
    row = page["items"][0]
    assert set(row) == {"id", "name", "address", "requests", "requests_status", "versions", "state"}
    assert row["requests"] == 0 and row["requests_status"] == "red" and row["versions"] == {}


def test_list_shows_versions_of_running_components_only(rpc, admin):
    server = rpc.call("inventory", "create_server", admin, NEW_SERVER)
    rpc.call("inventory", "set_component_state", server["id"], "dns", "running", "3.2.6")
    rpc.call("inventory", "set_component_state", server["id"], "dhcp", "stopped", "2.2.0")
    row = rpc.call("inventory", "list_servers", admin, {})["items"][0]
    assert row["versions"] == {"dns": "3.2.6"}
    assert row["state"] == "running"


def test_settings_defaults_patch_and_hidden_secrets(rpc, admin):
    settings = rpc.call("inventory", "get_settings", admin)
    assert settings["monitoring"]["raw_retention_minutes"] == 1440
    assert settings["rabbitmq"]["password_set"] is False

    patched = rpc.call(
        "inventory",
        "update_settings",
        admin,
        {"monitoring": {"raw_retention_minutes": 30}, "rabbitmq": {"password": "rabbit-secret"},
         "update": {"mode": "local", "repository_tokens": {"dns": "repo-secret"}}},
    )
    assert patched["monitoring"]["raw_retention_minutes"] == 30
    assert patched["monitoring"]["communication_type"] == "push"  # untouched fields keep their values
    assert patched["rabbitmq"]["password_set"] is True
    assert patched["update"]["repository_tokens_set"] == {"dns": True, "dhcp": False, "monitor": False}
    assert "rabbit-secret" not in str(patched) and "repo-secret" not in str(patched)
    # Services get no secret with the settings, and each only the one it uses, sealed.
    effective = rpc.call("inventory", "effective_settings")
    assert "password" not in effective["rabbitmq"] and "repository_tokens" not in effective["update"]
    broker = rpc.call("inventory", "broker_settings")
    assert "rabbit-secret" not in str(broker) and TEST_BOX.open_sealed(RABBITMQ_PASSWORD, broker["password"]) == "rabbit-secret"
    tokens = rpc.call("inventory", "repository_tokens")
    assert "repo-secret" not in str(tokens) and TEST_BOX.open_sealed(REPOSITORY_TOKEN, tokens["dns"]) == "repo-secret"
    with pytest.raises(ValueError):  # sealed for one purpose, it opens as no other
        TEST_BOX.open_sealed(REPOSITORY_TOKEN, broker["password"])


def test_settings_need_an_admin_and_valid_values(rpc, admin):
    operator = _user(rpc, admin, "op", "operator")
    with pytest.raises(PermissionDenied):
        rpc.call("inventory", "update_settings", operator, {"monitoring": {"verify_ca": True}})
    with pytest.raises(ValidationFailed) as err:
        rpc.call("inventory", "update_settings", admin, {"monitoring": {"communication_type": "carrier-pigeon"}})
    assert "monitoring" in err.value.details
    assert rpc.call("inventory", "get_settings", admin)["monitoring"]["communication_type"] == "push"


def test_rabbitmq_test_really_connects(rpc, admin):
    good = rpc.call("inventory", "test_rabbitmq", admin, {"host": "127.0.0.1", "user": "guest", "password": "guest"})
    assert good["ok"] is True
    bad = rpc.call("inventory", "test_rabbitmq", admin, {"host": "127.0.0.1", "user": "guest", "password": "wrong"})
    assert bad["ok"] is False and "refused" in bad["message"]
    closed = rpc.call("inventory", "test_rabbitmq", admin, {"host": "127.0.0.1", "port": 1, "password": "x"})
    assert closed["ok"] is False


def test_tokens_are_stored_as_hashes_and_can_be_revoked(rpc, admin, engine):
    created = create_token(rpc, admin, {"name": "ci"})
    with engine.connect() as connection:
        hashes = connection.execute(text("SELECT token_hash FROM inventory.api_tokens")).scalars().all()
    assert created["token"] not in hashes
    assert authenticate(rpc, created["token"])["name"] == "admin"
    rpc.call("inventory", "delete_token", admin, created["id"])
    with pytest.raises(NotAuthenticated):
        authenticate(rpc, created["token"])


def test_users_see_only_their_own_tokens(rpc, admin):
    viewer = _user(rpc, admin, "viewer1", "viewer")
    assert {t["user"] for t in rpc.call("inventory", "list_tokens", viewer)} == {"viewer1"}
    with pytest.raises(PermissionDenied):
        create_token(rpc, viewer, {"user": "admin"})


def test_health_answers(rpc, inventory):
    assert rpc.call("inventory", "health") == {"service": "inventory", "database": "ok"}


def test_agent_token_reports_for_its_server_only(rpc, admin):
    server = rpc.call("inventory", "create_server", admin, NEW_SERVER)
    first = agent_token(rpc, server["id"])
    agent = authenticate(rpc, first)
    assert agent["scope"] == "agent" and agent["server_id"] == server["id"] and agent["user_id"] is None
    # Not the server user: it cannot change the server, list, or mint tokens.
    with pytest.raises(PermissionDenied):
        rpc.call("inventory", "update_server", agent, server["id"], {"ssh_port": 1})
    with pytest.raises(PermissionDenied):
        rpc.call("inventory", "list_servers", agent, {})
    second = agent_token(rpc, server["id"])
    with pytest.raises(NotAuthenticated):
        authenticate(rpc, first)
    assert authenticate(rpc, second)["server_id"] == server["id"]


def test_liveness_events_set_the_stored_state(rpc, admin, settings):
    server = rpc.call("inventory", "create_server", admin, NEW_SERVER)
    rpc.call("inventory", "set_component_state", server["id"], "dns", "running", "3.2.6")
    monitoring = event_sender(settings, "monitoring_ingest")

    def changed(previous, state):
        return monitoring("server_state_changed", server_id=server["id"], server_name=server["name"],
                          previous_state=previous, state=state, last_heartbeat_at=None)

    def state():
        return rpc.call("inventory", "get_server", admin, server["id"])["state"]

    import time
    changed("up", "down")
    deadline = time.monotonic() + 10
    while state() != "down" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state() == "down"
    assert rpc.call("inventory", "list_servers", admin, {"state": "down"})["total"] == 1
    changed("down", "up")
    while state() != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state() == "running"


def test_the_agents_vhost_follows_the_control_planes_own_until_an_admin_sets_one(rpc, admin, settings):
    own = amqp_vhost(settings.amqp_uri)
    assert own != "/"  # the tests' own vhost, as a second stack's would be
    assert rpc.call("inventory", "get_settings", admin)["rabbitmq"]["vhost"] == own
    assert rpc.call("inventory", "effective_settings")["rabbitmq"]["vhost"] == own  # what bundles and users get
    rpc.call("inventory", "update_settings", admin, {"rabbitmq": {"vhost": "/"}})
    assert rpc.call("inventory", "effective_settings")["rabbitmq"]["vhost"] == "/"  # set explicitly: kept


def test_a_repeated_event_acts_once(rpc, admin, settings, caplog):
    """Events are delivered at least once (a relay killed between the broker's confirm and its commit
    publishes again): the same server_state_changed arriving after a newer one must not undo it."""
    server = rpc.call("inventory", "create_server", admin, dict(NEW_SERVER, name="repeated-event"))
    rpc.call("inventory", "set_component_state", server["id"], "dns", "running", "3.2.6")
    send = event_sender(settings, "monitoring_ingest")

    def state():
        return rpc.call("inventory", "get_server", admin, server["id"])["state"]

    def changed(previous, now):
        return send("server_state_changed", server_id=server["id"], server_name=server["name"],
                    previous_state=previous, state=now, last_heartbeat_at=None)

    down = changed("up", "down")
    wait_for(lambda: state() == "down", what="the server down")
    changed("down", "up")
    wait_for(lambda: state() == "running", what="the server up again")
    caplog.set_level("INFO", logger="steward.outbox")
    send.again(down)
    wait_for(lambda: state() != "running" or down["id"] in caplog.text, what="the repeat handled")
    assert state() == "running"


def test_refreshing_agent_tokens_last_use_is_a_heap_only_update(engine, settings):
    """Every agent token's last_used_at is refreshed once a minute (agent_tokens_used): with room on its page
    (migration 0010) each refresh keeps the row's new version beside the old one and touches no index."""
    from sqlalchemy.orm import Session

    from bench.gateway import seed, seed_agent_tokens
    from services.inventory.identity import Identity

    seed(settings.database_url, 600)  # a few dozen pages of tokens
    with engine.connect() as connection:
        ids = connection.execute(text("SELECT id FROM inventory.servers ORDER BY id")).scalars().all()
    seed_agent_tokens(settings.database_url, ids)
    with Session(engine) as session, session.begin():
        Identity(session).agent_tokens_used(ids)
        updated, heap_only = session.execute(text(
            "SELECT pg_stat_get_xact_tuples_updated(c.oid), pg_stat_get_xact_tuples_hot_updated(c.oid) "
            "FROM pg_class c WHERE c.oid = 'inventory.api_tokens'::regclass")).one()
    assert updated == len(ids) == 600
    assert heap_only == updated, f"{updated - heap_only} of {updated} refreshes wrote a new index entry"
