"""Agent messages through the real broker and the batch consumer process into PostgreSQL."""
import json
import subprocess
import time
from datetime import datetime, timedelta, timezone

from kombu import Connection
from sqlalchemy import text

from services.monitoring_ingest import partitions
from services.monitoring_ingest.consumer import CONNECTION_NAME
from services.monitoring_ingest.ingest import BatchWriter, parse
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


def test_a_redelivered_message_is_stored_once(monitoring, agent_publish, scalar):
    system = message("system", 8, 41, _at(5))
    agent_publish(system)
    agent_publish(system)  # as after a lost acknowledgement
    agent_publish(message("system", 8, 42, _at(6)))
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = 8") == 2)
    wait_for(lambda: scalar("SELECT samples FROM monitoring.system_aggregates "
                            "WHERE server_id = 8 AND resolution = 'minute'") == 2)


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


def test_malformed_messages_are_dead_lettered_and_the_rest_stored(settings, monitoring, agent_publish, scalar):
    with Connection(settings.amqp_uri) as connection:
        connection.default_channel.queue_purge("monitoring.dead")
    good = message("system", 10, 1, _at(1))
    agent_publish(good, raw=b"{not json")
    agent_publish(good, raw=json.dumps(dict(good, data={"load": "high"})).encode())
    agent_publish(good, raw=json.dumps(dict(good, v=2)).encode())
    agent_publish(good)
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = 10") == 1)
    with Connection(settings.amqp_uri) as connection:
        dead = wait_for(lambda: connection.default_channel.queue_declare("monitoring.dead", passive=True).message_count == 3
                        and 3)
    assert dead == 3


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
    received = []
    wait_for(lambda: received.extend(p for name, p in monitoring_events() if name == "disk_low") or len(received) >= 2)
    time.sleep(0.3)  # a third report would have arrived by now
    received += [p for name, p in monitoring_events() if name == "disk_low"]
    assert [(p["server_id"], p["mountpoint"], p["free_percent"]) for p in received] == [(11, "/var", 5.0), (11, "/var", 1.0)]


def test_the_consumer_comes_back_after_losing_its_broker_connection(settings, monitoring, agent_publish, scalar):
    vhost = Connection(settings.amqp_uri).virtual_host
    # list_connections shows every vhost's connections: only this test's own consumer is closed.
    listing = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "vhost", "client_properties"],
                             capture_output=True, text=True, check=True).stdout
    connections = [line.split("\t")[0] for line in listing.splitlines()
                   if CONNECTION_NAME in line and line.split("\t")[1] == vhost]
    assert connections
    for connection in connections:
        subprocess.run(["rabbitmqctl", "-q", "close_connection", connection, "test: connection lost"], check=True)
    agent_publish(message("system", 12, 1, _at(1)))
    wait_for(lambda: scalar("SELECT count(*) FROM monitoring.system_samples WHERE server_id = 12") == 1, timeout=15)
