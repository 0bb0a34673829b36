"""When a backup may compare its snapshot with the last one at all, and how many earlier snapshots a
restore must read (services/backup/reuse.py); the proof itself runs on the database (tests/backup)."""
from collections import namedtuple

from services.backup import reuse

Database = namedtuple("Database", "system_identifier database_oid xmin xmax")
PREVIOUS = {"system_identifier": "7713842474791008372", "database_oid": 16384, "xmin": 5000, "tables": {"a.t": {}}}


def test_only_a_snapshot_of_the_same_database_within_the_id_window_is_compared():
    same = Database("7713842474791008372", 16384, 9000, 9001)
    assert reuse.comparable(PREVIOUS, same) == {"a.t": {}}
    assert reuse.comparable(None, same) == {}
    assert reuse.comparable(PREVIOUS, same._replace(system_identifier="1")) == {}  # another cluster
    assert reuse.comparable(PREVIOUS, same._replace(system_identifier=None)) == {}  # not allowed to read it
    assert reuse.comparable(PREVIOUS, same._replace(database_oid=16385)) == {}  # another database
    assert reuse.comparable(PREVIOUS, same._replace(xmax=4000)) == {}  # ids behind the last backup's
    assert reuse.comparable(PREVIOUS, same._replace(xmax=5000 + reuse.XID_WINDOW - 1)) == {"a.t": {}}
    assert reuse.comparable(PREVIOUS, same._replace(xmax=5000 + reuse.XID_WINDOW)) == {}  # age() would wrap


def entry(snapshot_id, size):
    return {"schema": "monitoring", "table": f"t{size}", "bytes": size, "snapshot_id": snapshot_id}


def test_a_restore_reads_only_the_earlier_snapshots_that_hold_the_most():
    tables = {f"t{size}": entry(snapshot, size) for snapshot, size in
              (("s1", 10), ("s1", 11), ("s2", 30), ("s3", 5), ("s4", 100), (None, 1000))}
    reuse.limit_sources(tables, 2)
    assert {name: t["snapshot_id"] for name, t in tables.items()} == {
        "t10": None, "t11": None, "t30": "s2", "t5": None, "t100": "s4", "t1000": None}
    parts = reuse.stored_in({"tables": tables}, "own")
    assert reuse.reused(parts) == {"s2": [("monitoring", "t30")], "s4": [("monitoring", "t100")]}
    assert reuse.reused_bytes(parts) == 130
    assert reuse.excluded_data(parts) == ['"monitoring"."t30"', '"monitoring"."t100"']
    assert reuse.snapshots_in_use([("own", parts), ("old", None)]) == {"own", "s2", "s4", "old"}


def test_one_pass_over_an_earlier_stream_unless_a_name_is_in_two_of_its_schemas():
    tables = [["monitoring", "day_p1"], ["inventory", "servers"]]
    held = [["monitoring", "day_p1"], ["inventory", "servers"], ["inventory", "users"], ["notifier", "day_p1"]]
    assert reuse.selections(tables, held) == [
        ["--schema=inventory", "--schema=monitoring", "--table=servers", "--table=day_p1"]]
    # -n inventory -n monitoring -t servers -t day_p1 would also pick inventory.day_p1's rows: one pass each.
    assert reuse.selections(tables, held + [["inventory", "day_p1"]]) == [
        ["--schema=inventory", "--table=servers"], ["--schema=monitoring", "--table=day_p1"]]
