"""The fleet list is answered from each process's copy of the fleet: never stale.

The copies below stand for replicas; each must see a change committed by
anybody (another replica, a migration, a hand-made SQL statement) on its
next call, because the change's transaction sets ``fleet_version``.
"""
from sqlalchemy import text

from services.inventory.fleet import FleetCopy

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
