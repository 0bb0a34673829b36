"""Hourly aggregates are rolled up from the minute ones; series read the same before and after."""
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from services.monitoring_ingest import rollup
from services.monitoring_ingest.ingest import BatchWriter, parse
from services.monitoring_ingest.partitions import ensure_covering
from .helpers import message, wait_for

import json

# Two days ago at 10:00 UTC: hours long closed, within the partitions' reach.
HOUR = (datetime.now(timezone.utc) - timedelta(days=2)).replace(hour=10, minute=0, second=0, microsecond=0)


def _write(engine, messages):
    batch = [parse(json.dumps(m)) for m in messages]
    with engine.begin() as connection:
        ensure_covering(connection, {m["collected_at"] for m in batch}, set())
        BatchWriter().write(connection, batch)


def _hourly(rpc, admin, server_id):
    query = {"start": HOUR.isoformat(), "end": (HOUR + timedelta(hours=3)).isoformat(), "step": "3600"}
    system = rpc.call("monitoring_ingest", "system_series", admin, server_id, query)
    dns = rpc.call("monitoring_ingest", "dns_series", admin, server_id, query)
    rps = rpc.call("monitoring_ingest", "record_rps", admin, dict(query, name="www.example.com."))
    return ([(p["at"], p["samples"], p["load1"]) for p in system["points"]],
            [(p["at"], p["total"]) for p in dns["points"]], [(p["at"], p["hits"]) for p in rps["points"]])


def _dns(server_id, seq, at, hits):
    return message("dns", server_id, seq, at, total=hits, records=[
        {"name": "www.example.com.", "type": "A", "hits": hits, "last_access": at.isoformat()}])


def _rows(engine, sql):
    with engine.connect() as connection:
        return connection.execute(text(sql)).all()


def test_rolled_up_hours_read_as_their_minutes_did_and_late_data_rolls_them_up_again(engine, rpc, admin, monitoring):
    _write(engine, [
        message("system", 21, 1, HOUR + timedelta(minutes=5), load=[1.0, 1.0, 1.0]),
        message("system", 21, 2, HOUR + timedelta(minutes=35), load=[3.0, 3.0, 3.0]),
        message("system", 21, 3, HOUR + timedelta(hours=1, minutes=1), load=[5.0, 5.0, 5.0]),
        _dns(21, 1, HOUR + timedelta(minutes=5), 4), _dns(21, 2, HOUR + timedelta(minutes=50), 6),
    ])
    # Past hours: marked for the rollup, and read from their minutes meanwhile.
    assert len(_rows(engine, "SELECT hour FROM monitoring.rollup_dirty")) == 2
    assert _rows(engine, "SELECT count(*) FROM monitoring.system_aggregates WHERE resolution = 'hour'") == [(0,)]
    before = _hourly(rpc, admin, 21)
    assert [(samples, load) for _, samples, load in before[0]] == [(2, 2.0), (1, 5.0)]
    assert [total for _, total in before[1]] == [10] and [hits for _, hits in before[2]] == [10]

    done = rollup.run(engine)
    assert HOUR in done and HOUR + timedelta(hours=1) in done
    assert _rows(engine, "SELECT hour FROM monitoring.rollup_dirty") == []
    assert _rows(engine, "SELECT samples, load1_sum FROM monitoring.system_aggregates "
                         "WHERE resolution = 'hour' AND server_id = 21 ORDER BY bucket") == [(2, 4.0), (1, 5.0)]
    assert _hourly(rpc, admin, 21) == before
    assert rollup.run(engine) == []  # nothing new: nothing to do

    # A spooled backlog reaches the first hour after it was rolled up.
    _write(engine, [message("system", 21, 4, HOUR + timedelta(minutes=59), load=[8.0, 8.0, 8.0]),
                    _dns(21, 3, HOUR + timedelta(minutes=58), 5)])
    late = _hourly(rpc, admin, 21)
    assert [(samples, load) for _, samples, load in late[0]] == [(3, 4.0), (1, 5.0)]
    assert [total for _, total in late[1]] == [15] and [hits for _, hits in late[2]] == [15]
    assert rollup.run(engine) == [HOUR]
    assert _hourly(rpc, admin, 21) == late
    assert _rows(engine, "SELECT total FROM monitoring.dns_aggregates WHERE resolution = 'hour' AND server_id = 21") \
        == [(15,)]


def test_a_batch_committed_while_the_rollup_is_on_its_hour_is_rolled_up_by_the_next_run(
        engine, scalar, agent_publish):
    """The rollup clears a dirty mark only if no batch marked the hour again meanwhile."""
    _write(engine, [message("system", 22, 1, HOUR + timedelta(minutes=1), load=[1.0, 1.0, 1.0])])
    assert HOUR in rollup.run(engine)
    _write(engine, [message("system", 22, 2, HOUR + timedelta(minutes=2), load=[2.0, 2.0, 2.0])])  # late: dirty

    pool = ThreadPoolExecutor(max_workers=1)
    with engine.connect() as holder:
        # Hold the hour's row: the rollup reads the dirty mark, then waits to write the hour.
        holder.execute(text("SELECT 1 FROM monitoring.system_aggregates WHERE resolution = 'hour' "
                            "AND server_id = 22 AND bucket = :h FOR UPDATE"), {"h": HOUR})
        running = pool.submit(rollup.run, engine)
        wait_for(lambda: scalar("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND datname = current_database() AND query LIKE '%INSERT INTO monitoring.system_aggregates%'"),
                 what="the rollup waiting on the hour's row")
        # Meanwhile a real batch through the consumer process: another late minute of that hour.
        agent_publish(message("system", 22, 3, HOUR + timedelta(minutes=3), load=[3.0, 3.0, 3.0]))
        wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = 22") == 3,
                 what="the batch committed")
        holder.rollback()
        assert HOUR in running.result(timeout=30)
    pool.shutdown()

    assert len(_rows(engine, "SELECT hour FROM monitoring.rollup_dirty")) == 1  # the batch's own mark
    assert rollup.run(engine) == [HOUR]
    assert _rows(engine, "SELECT samples, load1_sum FROM monitoring.system_aggregates "
                         "WHERE resolution = 'hour' AND server_id = 22") == [(3, 6.0)]


def test_live_traffic_marks_nothing(engine):
    _write(engine, [message("system", 23, 1, datetime.now(timezone.utc))])
    assert _rows(engine, "SELECT hour FROM monitoring.rollup_dirty") == []
