"""Agent messages through the real broker and the batch consumer process into PostgreSQL."""
import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from services.monitoring_ingest import partitions
from services.monitoring_ingest.consumer import CONNECTION_NAME as CONSUMER_CONNECTION
from services.monitoring_ingest.ingest import BatchWriter, parse
from tests.queues import close_connections, queue_depth
from .helpers import message, wait_for

# Yesterday, a quarter past an hour: whole minutes and hours, in the past whenever the tests run.
MINUTE = (datetime.now(timezone.utc) - timedelta(days=1)).replace(minute=15, second=0, microsecond=0)


def _at(seconds):
    return MINUTE + timedelta(seconds=seconds)


def test_statistics_are_stored_and_aggregated(rpc, admin, monitoring, agent_publish, scalar):
    for seq, load in enumerate([1.0, 2.0, 3.0]):
        agent_publish(message("system", 7, seq, _at(10 * seq), load=[load, load / 2, load / 4],
                              disks=[{"mount": "/", "total_bytes": 1000, "used_bytes": 100 * (seq + 1)}]))
    agent_publish(message("system", 7, 3, _at(3600), load=[9.0, 9.0, 9.0]))  # the next hour
    records = [
        {"name": "www.example.com.", "type": "A", "hits": 12, "last_access": _at(50).isoformat()},
        {"name": "mail.example.com.", "type": "MX", "hits": 5, "last_access": _at(40).isoformat()},
    ]
    agent_publish(message("dns", 7, 0, _at(59), total=17, records=records))
    agent_publish(message("dns", 7, 1, _at(119), total=3,
                          records=[{"name": "www.example.com.", "type": "A", "hits": 3,
                                    "last_access": _at(110).isoformat()}]))
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples") == 4
             and scalar("SELECT count(*) FROM monitoring.dns_periods") == 2)

    query = {"start": MINUTE.isoformat(), "end": (MINUTE + timedelta(hours=2)).isoformat(), "step": "60"}
    system = rpc.call("monitoring_ingest", "system_series", admin, 7, query)
    first = system["points"][0]
    assert [p["samples"] for p in system["points"]] == [3, 1]
    assert first["load1"] == 2.0 and first["load5"] == 1.0 and first["disk_used_max_percent"] == 30.0
    hourly = rpc.call("monitoring_ingest", "system_series", admin, 7, dict(query, step="3600"))
    assert [(p["samples"], p["load1"]) for p in hourly["points"]] == [(3, 2.0), (1, 9.0)]

    dns = rpc.call("monitoring_ingest", "dns_series", admin, 7, query)
    assert dns["total"] == 20 and [p["total"] for p in dns["points"]] == [17, 3]

    rps = rpc.call("monitoring_ingest", "record_rps", admin, dict(query, name="WWW.example.com"))
    assert [(p["hits"], p["rps"]) for p in rps["points"]] == [(12, 0.2), (3, 0.05)]
    assert rpc.call("monitoring_ingest", "record_rps", admin, dict(query, name="www.example.com", type="MX"))["points"] == []

    last = rpc.call("monitoring_ingest", "record_last_access", admin, 7, {})
    assert [(r["name"], r["type"], r["last_access"]) for r in last["items"]] == [
        ("www.example.com.", "A", _at(110).isoformat()), ("mail.example.com.", "MX", _at(40).isoformat())]
    assert len(rpc.call("monitoring_ingest", "record_last_access", admin, 7, {"search": "MAIL"})["items"]) == 1


def test_a_batch_redelivered_after_its_commit_is_stored_once(settings, engine, monitoring, agent_publish, scalar):
    """The consumer commits a batch, then loses its channel before the acknowledgement: RabbitMQ
    delivers the batch again, and the second write must change nothing."""
    def stored():
        return (scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = 8"),
                scalar("SELECT samples FROM monitoring.system_aggregates WHERE server_id = 8 AND resolution = 'minute'"))

    with engine.connect() as holder:
        # An open transaction holds the table: the consumer's write of the batch waits for it.
        holder.execute(text("LOCK TABLE monitoring.system_samples IN SHARE MODE"))
        for seq in (41, 42):
            agent_publish(message("system", 8, seq, _at(seq - 40)))
        wait_for(lambda: queue_depth(settings, "monitoring.stats") == (0, 2), what="the batch delivered, unacked")
        wait_for(lambda: scalar("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                                "WHERE NOT l.granted AND a.datname = current_database()"),
                 what="the consumer's write waiting")
        assert close_connections(settings, CONSUMER_CONNECTION) >= 1  # its acknowledgement can no longer arrive
        holder.rollback()  # the write commits now: the batch is stored, and it is back on the queue
    agent_publish(message("system", 8, 43, _at(3)))  # published after the redelivery: stored after it
    wait_for(lambda: stored()[0] == 3, what="the last message stored")
    wait_for(lambda: queue_depth(settings, "monitoring.stats") == (0, 0), what="every message acknowledged")
    assert stored() == (3, 3)


def test_a_committed_batch_written_again_changes_nothing(engine):
    """The consumer died after the commit, before the acknowledgement: the broker sends the batch again."""
    batch = [parse(json.dumps(m)) for m in (
        message("system", 9, 1, _at(1)),
        message("dns", 9, 1, _at(2), total=4, records=[{"name": "a.test.", "type": "A", "hits": 4,
                                                         "last_access": _at(2).isoformat()}]),
        message("heartbeat", 9, 1, _at(3)),
    )]
    writer = BatchWriter()

    def snapshot():
        with engine.connect() as connection:
            return [connection.execute(text(sql)).all() for sql in (
                "SELECT resolution, samples, load1_sum FROM monitoring.system_aggregates WHERE server_id = 9 ORDER BY 1",
                "SELECT resolution, total FROM monitoring.dns_aggregates WHERE server_id = 9 ORDER BY 1",
                "SELECT resolution, hits FROM monitoring.dns_record_aggregates WHERE server_id = 9 ORDER BY 1",
                "SELECT count(*) FROM monitoring.heartbeats WHERE server_id = 9",
            )]

    with engine.begin() as connection:
        partitions.ensure_covering(connection, {m["collected_at"] for m in batch}, set())
    with engine.begin() as connection:
        first = writer.write(connection, batch)
    once = snapshot()
    with engine.begin() as connection:
        again = writer.write(connection, batch)
    assert snapshot() == once
    assert once[1] == [("minute", 4)] and once[3] == [(1,)]  # the hour is rolled up later (test_ingest_rollup.py)
    assert [c[2] for c in first.state_changes] == ["unknown"] and again.state_changes == []


def test_malformed_messages_are_dead_lettered_with_the_reason_and_the_rest_stored(monitoring, agent_publish,
                                                                                 dead_letters, scalar):
    now = datetime.now(timezone.utc)
    good = message("system", 10, 1, _at(1))
    refused = {
        b"{not json": "not JSON",
        json.dumps(dict(good, data={"load": "high"})).encode(): "Not a valid list",
        json.dumps(dict(good, v=2)).encode(): "Must be equal to 1",
        json.dumps(dict(good, data=dict(good["data"], uptime=5))).encode(): "uptime",
        json.dumps(message("system", 10, 2, now + timedelta(minutes=6))).encode(): "more than 5 minutes ahead",
        json.dumps(message("system", 10, 3, now - timedelta(days=8))).encode(): "more than 7 days behind",
    }
    for raw in refused:
        agent_publish(good, raw=raw)
    big = message("heartbeat", 10, 4, versions={"dns": "1"})
    big["data"]["agent_version"] = "x" * 20_000  # over the 16 KiB of a heartbeat
    agent_publish(big)
    agent_publish(good)
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = 10") == 1)
    reasons = {body: headers["x-steward-reason"] for headers, body in dead_letters(len(refused) + 1)}
    [too_big] = [reason for body, reason in reasons.items() if body not in refused]
    assert too_big.endswith("bytes: more than the 16384 a message may have")
    for raw, reason in refused.items():
        assert reason in reasons[raw], (raw, reasons[raw])
    assert scalar("SELECT count(*) FROM monitoring.heartbeats WHERE server_id = 10") == 0


def test_a_disk_that_runs_low_is_reported_once_until_it_recovers(monitoring, agent_publish, monitoring_events, scalar):
    def disk(seq, used):
        agent_publish(message("system", 11, seq, _at(seq), disks=[
            {"mount": "/", "total_bytes": 1000, "used_bytes": 100},
            {"mount": "/var", "total_bytes": 1000, "used_bytes": used}]))
        wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = 11") == seq)

    disk(1, 950)   # 5 % free: low
    disk(2, 960)   # still low: no second report
    disk(3, 500)   # recovered
    disk(4, 990)   # low again
    # Another server's disk runs low last: its report comes after any the four batches above made.
    agent_publish(message("system", 99, 1, _at(5), disks=[{"mount": "/", "total_bytes": 1000, "used_bytes": 999}]))
    received = []
    wait_for(lambda: received.extend(p for name, p in monitoring_events() if name == "disk_low")
             or any(p["server_id"] == 99 for p in received), what="the last server's report")
    assert [(p["server_id"], p["mountpoint"], p["free_percent"]) for p in received] == [
        (11, "/var", 5.0), (11, "/var", 1.0), (99, "/", 0.1)]


def test_the_consumer_comes_back_after_losing_its_broker_connection(settings, monitoring, agent_publish, scalar):
    assert close_connections(settings, CONSUMER_CONNECTION) >= 1
    agent_publish(message("system", 12, 1, _at(1)))
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = 12") == 1, timeout=15)
