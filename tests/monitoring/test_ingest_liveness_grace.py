"""Liveness that knows when ingest was away (liveness.py): servers whose heartbeats waited on the queue
while the consumer was stopped are not marked down, and a silence of most of the fleet at once is one
incident, not an outage per server. Short settings (tests/conftest.py MONITORING_CONFIG: down after 1 s, heartbeats
expected every 0.5 s); the heartbeats go every 0.2 s, as the gateway relays them."""
import os
import signal
import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from .helpers import agent_publisher, message, wait_for

SERVERS = list(range(501, 511))
EVERY_SECONDS = 0.2


class Heartbeats:
    """A thread sending a heartbeat for each of ``servers`` every EVERY_SECONDS; ``only`` narrows who beats
    (an empty set: none, all falling silent at the same instant)."""

    def __init__(self, amqp_uri, servers):
        self.amqp_uri = amqp_uri
        self.only = set(servers)
        self.seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        with agent_publisher(self.amqp_uri) as publish:
            while not self._stop.wait(EVERY_SECONDS):
                self.seq += 1
                for server_id in sorted(self.only):
                    publish(message("heartbeat", server_id, self.seq))


def _all_up(scalar):
    return scalar("SELECT count(*) FROM monitoring.liveness WHERE state = 'up' AND server_id = ANY(:s)",
                  s=SERVERS) == len(SERVERS)


def _listening_for(scalar, seconds):
    return scalar("SELECT now() - listening_since > make_interval(secs => :t) FROM monitoring.ingest_status",
                  t=seconds)


def _changes(events):
    return [(name, p.get("server_id"), p.get("state")) for name, p in events
            if name == "fleet_silence_detected" or (name == "server_state_changed" and p["server_id"] in SERVERS)]


def test_servers_heard_late_because_ingest_was_stopped_do_not_go_down(settings, monitoring, consumer_process,
                                                                      monitoring_events, scalar):
    with Heartbeats(settings.amqp_uri, SERVERS) as beats:
        wait_for(lambda: _all_up(scalar), what="ten servers up")
        wait_for(lambda: _listening_for(scalar, 1.0), what="the sweep to judge silence")
        os.kill(consumer_process.pid, signal.SIGSTOP)  # ingest stops consuming; heartbeats wait on the queue
        try:
            # Three times the down threshold without a heartbeat stored.
            wait_for(lambda: scalar("SELECT now() - caught_up_at > interval '3 s' FROM monitoring.ingest_status"),
                     what="3 s without ingest")
        finally:
            os.kill(consumer_process.pid, signal.SIGCONT)
        resumed_at = beats.seq
        wait_for(lambda: scalar("SELECT count(DISTINCT server_id) FROM monitoring.heartbeats "
                                "WHERE server_id = ANY(:s) AND seq >= :q", s=SERVERS, q=resumed_at) == len(SERVERS),
                 what="the backlog drained")
        wait_for(lambda: _listening_for(scalar, 2.0), what="two seconds of the sweep judging again")
    changes = _changes(monitoring_events())
    assert [c for c in changes if c[2] != "up"] == [], changes  # no down, no incident
    assert sorted(c[1] for c in changes) == SERVERS  # each came up once, at the start


def test_a_silence_of_the_whole_fleet_at_once_is_one_incident(settings, monitoring, consumer_process,
                                                             monitoring_events, scalar):
    received = []

    def heard(what):
        received.extend(monitoring_events())
        return what(_changes(received))

    with Heartbeats(settings.amqp_uri, SERVERS) as beats:
        wait_for(lambda: _all_up(scalar), what="ten servers up")
        wait_for(lambda: _listening_for(scalar, 1.0), what="the sweep to judge silence")
        beats.only = set()  # every server falls silent at the same instant: the network, not ten outages
        wait_for(lambda: heard(lambda c: ("fleet_silence_detected", None, None) in c), what="the incident")
        beats.only = set(SERVERS[:-1])  # they are back but for the last one, which really is down
        wait_for(lambda: heard(lambda c: ("server_state_changed", SERVERS[-1], "down") in c), timeout=15,
                 what="the one still silent down")
    [incident] = [p for name, p in received if name == "fleet_silence_detected"]
    assert (incident["silent_servers"], incident["servers_up"], incident["server_ids"]) == (10, 10, SERVERS)
    downs = [c for c in _changes(received) if c[2] == "down"]
    assert downs == [("server_state_changed", SERVERS[-1], "down")]


def test_after_a_control_plane_outage_every_server_gets_a_heartbeat_interval(engine):
    """The whole control plane away for 100 s (nothing queued: the gateway was away too), down after 90 s,
    heartbeats every 30 s: as the consumer starts again every server is past the threshold, and each one's
    next heartbeat is on its way. Injected times, in one transaction that the other tests' consumer and
    sweep wait for and that is rolled back."""
    from services.monitoring_ingest import liveness

    t0 = datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc)
    interval, down_after = timedelta(seconds=30), timedelta(seconds=90)
    with engine.connect() as connection:
        def beat(server_id, at):
            connection.execute(text(
                "INSERT INTO monitoring.liveness (server_id, state, last_heartbeat_at, changed_at) "
                "VALUES (:s, 'up', :t, :t) ON CONFLICT (server_id) DO UPDATE SET last_heartbeat_at = :t"),
                {"s": server_id, "t": at})
            liveness.report_ingest(connection, at, caught_up=True)

        liveness.report_ingest(connection, t0 - timedelta(minutes=10), caught_up=True, fresh=True)
        connection.execute(text("UPDATE monitoring.ingest_status SET silence_since = NULL, quiet_until = NULL"))
        for i, server_id in enumerate(SERVERS):  # heartbeats spread over one interval, the last at t0
            beat(server_id, t0 - interval + timedelta(seconds=3 * (i + 1)))
        back = t0 + timedelta(seconds=100)
        liveness.report_ingest(connection, back, caught_up=True, fresh=True)  # the consumer has started again
        decided = liveness.sweep(connection, back + timedelta(seconds=1), down_after, interval)
        for i, server_id in enumerate(SERVERS[:-1]):  # each one's next heartbeat within the interval; not the last
            at = back + timedelta(seconds=3 * (i + 1))
            beat(server_id, at)
            decided += liveness.sweep(connection, at + timedelta(seconds=0.5), down_after, interval)
        assert decided == []
        later = back + interval + timedelta(seconds=1)  # the grace is over: the one still silent is down
        liveness.report_ingest(connection, later, caught_up=True)
        assert [(name, p["server_id"], p["state"]) for name, p in liveness.sweep(connection, later, down_after,
                                                                                  interval)] == \
            [("server_state_changed", SERVERS[-1], "down")]
        connection.rollback()
