"""The fleet list is answered from each process's copy of the fleet: never stale.

The copies below stand for replicas; each must see a change committed by
anybody (another replica, a migration, a hand-made SQL statement) on its
next call, because the change's transaction records which servers it changed
(``fleet_changes``), and a copy reloads just those.
"""
import threading
from datetime import timedelta

from sqlalchemy import make_url, text

from scripts.sandbox import drop_database
from services.inventory import fleet
from services.inventory.fleet import FleetCopy, prune_changes
from shared.db import make_engine
from shared.migrations import upgrade
from tests.conftest import TEST_DB

NEW = {"address": "10.0.0.1", "os": "ubuntu", "ssh_password": "pw-1"}


def _names(copy, engine, **query):
    with engine.connect() as connection:
        entries, total = copy.page(connection, **query)
    return [e.row["name"] for e in entries], total


def test_every_change_shows_on_the_next_call_in_every_copy(rpc, admin, engine):
    first, second = FleetCopy(), FleetCopy()
    assert _names(first, engine) == ([], 0)
    server = rpc.call("inventory", "create_server", admin, dict(NEW, name="dns-b"))
    rpc.call("inventory", "create_server", admin, dict(NEW, name="DNS-a", address="10.0.0.2"))
    assert _names(first, engine) == (["DNS-a", "dns-b"], 2)
    assert _names(second, engine, sort="-name") == (["dns-b", "DNS-a"], 2)

    rpc.call("inventory", "update_server", admin, server["id"], {"name": "web-b"})
    assert _names(first, engine, search="DNS") == (["DNS-a"], 1)
    rpc.call("inventory", "set_component_state", server["id"], "dns", "running", "3.2.6")
    with engine.connect() as connection:
        (entry,), _ = second.page(connection, search="web")
    assert entry.row["versions"] == {"dns": "3.2.6"} and entry.row["state"] == "running"

    with engine.begin() as connection:  # not through the service at all
        connection.execute(text("UPDATE inventory.servers SET state = 'down' WHERE id = :id"), {"id": server["id"]})
    assert _names(first, engine, state="down") == (["web-b"], 1)
    rpc.call("inventory", "delete_server", admin, server["id"])
    assert _names(second, engine) == (["DNS-a"], 1)
    assert _names(first, engine, search="web") == ([], 0)


def test_a_search_is_a_literal_substring_and_pages_walk_the_whole_match(rpc, admin, engine):
    for i in range(7):
        rpc.call("inventory", "create_server", admin, dict(NEW, name=f"n{i}.site_1", address=f"10.0.1.{i + 1}"))
    rpc.call("inventory", "create_server", admin, dict(NEW, name="n9.siteX1", address="10.0.1.99"))
    copy = FleetCopy()
    assert _names(copy, engine, search="SITE_1")[1] == 7  # "_" is a character, not a wildcard
    pages = [_names(copy, engine, search="site_1", sort="-name", page=p, per_page=3)[0] for p in (1, 2, 3, 4)]
    assert pages == [["n6.site_1", "n5.site_1", "n4.site_1"], ["n3.site_1", "n2.site_1", "n1.site_1"],
                     ["n0.site_1"], []]


def _server(rpc, admin, name, n):
    return rpc.call("inventory", "create_server", admin, dict(NEW, name=name, address=f"198.18.0.{n}"))


def test_changes_are_applied_in_place_without_reloading_the_fleet(rpc, admin, engine):
    servers = [_server(rpc, admin, f"web-{n}", n) for n in range(1, 5)]
    copy = FleetCopy()
    assert _names(copy, engine) == (["web-1", "web-2", "web-3", "web-4"], 4)

    rpc.call("inventory", "update_server", admin, servers[0]["id"], {"name": "web-9"})  # moves to the end
    assert _names(copy, engine) == (["web-2", "web-3", "web-4", "web-9"], 4)
    rpc.call("inventory", "update_server", admin, servers[3]["id"], {"name": "a-web"})  # and to the front
    assert _names(copy, engine, sort="-name") == (["web-9", "web-3", "web-2", "a-web"], 4)
    rpc.call("inventory", "delete_server", admin, servers[1]["id"])
    assert _names(copy, engine) == (["a-web", "web-3", "web-9"], 3)
    for n in range(20):  # a heartbeat storm: the versions a server reports change it
        rpc.call("inventory", "record_reported_versions", servers[2]["id"], {"dns": f"3.2.{n}"})
        with engine.connect() as connection:
            (entry,), _ = copy.page(connection, search="web-3")
        assert entry.row["versions"] == {"dns": f"3.2.{n}"} and entry.row["state"] == "running"
    _server(rpc, admin, "web-0", 9)
    assert _names(copy, engine, search="web") == (["a-web", "web-0", "web-3", "web-9"], 4)
    assert copy.full_reloads == 1 and copy.servers_reloaded == 24


def test_a_change_committed_after_the_copy_read_past_it_is_still_seen(rpc, admin, engine):
    """The writer's transaction began (and changed the server) before the copy read; it commits after."""
    server = _server(rpc, admin, "dns-a", 1)
    _server(rpc, admin, "dns-b", 2)
    copy = FleetCopy()
    assert _names(copy, engine) == (["dns-a", "dns-b"], 2)
    with engine.connect() as writer:
        writer.execute(text("UPDATE inventory.servers SET name = 'dns-c' WHERE id = :id"), {"id": server["id"]})
        with engine.begin() as other:  # a later transaction, committed first: the copy's snapshot moves past both
            other.execute(text("UPDATE inventory.servers SET state = 'down' WHERE name = 'dns-b'"))
        assert _names(copy, engine, state="down") == (["dns-b"], 1)
        assert _names(copy, engine) == (["dns-a", "dns-b"], 2)
        writer.commit()
    assert _names(copy, engine) == (["dns-b", "dns-c"], 2)
    assert copy.full_reloads == 1


def test_a_copy_older_than_the_kept_changes_reloads_in_full(rpc, admin, engine):
    server = _server(rpc, admin, "dns-a", 1)
    copy = FleetCopy()
    assert _names(copy, engine) == (["dns-a"], 1)
    rpc.call("inventory", "update_server", admin, server["id"], {"name": "dns-z"})
    with engine.begin() as connection:
        prune_changes(connection, kept=timedelta(0))
        assert connection.execute(text("SELECT count(*) FROM inventory.fleet_changes")).scalar() == 0
    assert _names(copy, engine) == (["dns-z"], 1)
    assert copy.full_reloads == 2
    rpc.call("inventory", "update_server", admin, server["id"], {"name": "dns-y"})  # kept again from here
    assert _names(copy, engine) == (["dns-y"], 1) and copy.full_reloads == 2


def test_a_truncated_fleet_is_seen_as_empty(rpc, admin, engine):
    _server(rpc, admin, "dns-a", 1)
    copy = FleetCopy()
    assert _names(copy, engine) == (["dns-a"], 1)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE inventory.servers CASCADE"))
    assert _names(copy, engine) == ([], 0)


def test_a_database_swapped_in_by_name_is_read_in_full(rpc, admin, engine, settings):
    """A live restore renames a restored database to the live one's name; its change history says nothing new."""
    other = f"{TEST_DB}_swapped"
    drop_database(other, recreate=True)
    other_url = make_url(settings.database_url).set(database=other)
    upgrade(other_url.render_as_string(hide_password=False), ["inventory"])
    restored = make_engine(other_url.render_as_string(hide_password=False), pool_size=1)
    try:
        _server(rpc, admin, "dns-a", 1)
        copy = FleetCopy()
        assert _names(copy, engine) == (["dns-a"], 1)
        assert _names(copy, restored) == ([], 0)
        assert _names(copy, engine) == (["dns-a"], 1)
    finally:
        restored.dispose()
        drop_database(other)


class _Paused:
    """A connection that runs ``then`` right after the statement ``at`` has been read: what another green
    thread may do while this one waits for the database."""

    def __init__(self, connection, at, then):
        self.connection, self.at, self.then = connection, at, then

    def execute(self, statement, *args):
        result = self.connection.execute(statement, *args)
        if statement is self.at:
            rows = result.all()
            self.then()
            return _Rows(rows)
        return result


class _Rows(list):
    def all(self):
        return list(self)

    def one(self):
        (row,) = self
        return row


def test_a_reader_whose_copy_was_changed_meanwhile_reads_again(rpc, admin, engine):
    """Y reads an old row of a server; a change, Z brings the copy past it, X reads from there; Y puts its old
    row in, then X ends: without reading again, X would call the copy current at a state that shows the change."""
    server = _server(rpc, admin, "dns-a", 1)
    copy = FleetCopy()
    assert _names(copy, engine) == (["dns-a"], 1)
    rpc.call("inventory", "update_server", admin, server["id"], {"name": "dns-b"})
    y_done, x_result = threading.Event(), []

    def x():
        with engine.connect() as connection:
            x_result.append(copy.page(_Paused(connection, fleet._CHANGES, y_done.wait))[1])

    def change_then_z_then_x():
        rpc.call("inventory", "update_server", admin, server["id"], {"name": "dns-c"})
        assert _names(copy, engine) == (["dns-c"], 1)  # Z
        reader.start()

    reader = threading.Thread(target=x)
    with engine.connect() as connection:  # Y
        copy.page(_Paused(connection, fleet._SOME, change_then_z_then_x))
    y_done.set()
    reader.join()
    assert x_result == [1]
    assert _names(copy, engine) == (["dns-c"], 1)


def test_the_previous_releases_version_row_still_changes_with_every_change(rpc, admin, engine):
    """During a rolling upgrade the previous release's inventory replicas read fleet_version (now a view over
    fleet_changes) and reload when it differs: it must differ after any committed change, without a lock."""
    def version():
        with engine.connect() as connection:
            return connection.execute(text("SELECT version FROM inventory.fleet_version WHERE id = 1")).scalar()

    before = version()
    server = rpc.call("inventory", "create_server", admin, dict(NEW, name="old-reader"))
    created = version()
    rpc.call("inventory", "set_component_state", server["id"], "dns", "running", "3.2.6")
    assert len({before, created, version()}) == 3
