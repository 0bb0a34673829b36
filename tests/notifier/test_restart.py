"""Killing the notifier (SIGKILL, mid-burst) loses nothing and sends nothing twice as the log shows."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from sqlalchemy import text

from shared.config import DEFAULT_PATH
from shared.errors import ServiceUnavailable
from tests.notifier.conftest import (FAST_POLICY, down, purge_notifier_queues, rule,
                                     wait_for, webhook_channel)

ROOT = Path(__file__).resolve().parents[2]


def _start_notifier(config_path, log_path):
    env = dict(os.environ, STEWARD_CONFIG=str(config_path), STEWARD_SECRET_KEY="test-secret-key",
               STEWARD_DB_NAME=os.environ.get("STEWARD_TEST_DB", "steward_test"),
               STEWARD_AMQP_VHOST=os.environ.get("STEWARD_TEST_VHOST", "steward_test"), STEWARD_LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "services.notifier"], cwd=ROOT, env=env,
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _kill(process):
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def test_a_killed_notifier_delivers_every_event_exactly_once_after_restart(
        rpc, admin, settings, engine, receiver, emit, tmp_path):
    # Windows capped far below the burst's length, so the burst is many deliveries and the kill
    # lands among them. (Appended as text: the notifier substitutes the ${...} in its own environment.)
    notifier = dict(FAST_POLICY, digest_window_seconds=0.05, digest_max_seconds=0.2, poll_seconds=0.05)
    config_path = tmp_path / "steward.yaml"
    config_path.write_text(DEFAULT_PATH.read_text() + yaml.safe_dump({"notifier": notifier}))
    purge_notifier_queues(settings.amqp_uri)

    first = _start_notifier(config_path, tmp_path / "notifier.log")
    emitted = []

    def burst():
        for server_id in range(1, 301):  # 3 s or more, through the kill and the restart
            emit("server_state_changed", **down(server_id))
            emitted.append(server_id)
            time.sleep(0.01)

    try:
        wait_for(lambda: _ready(rpc), timeout=30, what="the notifier process")
        channel = webhook_channel(rpc, admin, receiver)
        rule(rpc, admin, [channel])
        emitter = threading.Thread(target=burst)
        emitter.start()
        wait_for(lambda: len(receiver.requests) >= 3, what="the first deliveries")
    finally:
        _kill(first)
    killed_at = (len(emitted), len(receiver.requests))
    second = _start_notifier(config_path, tmp_path / "notifier.log")
    try:
        emitter.join(60)
        wait_for(lambda: _delivered_items(engine) == 300, timeout=60, what="all 300 events delivered")
    finally:
        _kill(second)

    assert killed_at[0] < 300, "the kill came after the burst; nothing was tested"
    with engine.connect() as connection:
        per_server = connection.execute(text(
            "SELECT i.server_id, count(*) FROM notifier.delivery_items i JOIN notifier.deliveries d "
            "ON d.id = i.delivery_id GROUP BY i.server_id")).all()
        unfinished = connection.execute(text(
            "SELECT count(*) FROM notifier.deliveries WHERE status <> 'delivered'")).scalar()
        logged = set(connection.execute(text("SELECT id FROM notifier.deliveries")).scalars())
    assert sorted(server for server, _ in per_server) == list(range(1, 301))
    assert {count for _, count in per_server} == {1}  # in the log once each
    assert unfinished == 0

    received = [int(r["headers"]["X-Steward-Delivery"]) for r in receiver.requests]
    assert set(received) == logged
    # Only a send cut off between the POST and the commit can reach the receiver twice,
    # with the same delivery id; one replica sends one delivery at a time.
    assert len(received) - len(set(received)) <= 1
    print(f"\nkilled after {killed_at[0]} events and {killed_at[1]} POSTs; {len(logged)} deliveries; "
          f"{len(received) - len(set(received))} re-sent after the kill")
    servers = sorted(e["server_id"] for body in receiver.json_bodies() for e in body["events"])
    assert set(servers) == set(range(1, 301))


def _ready(rpc):
    try:
        return rpc.call("notifier", "health", timeout=2)
    except ServiceUnavailable:  # not consuming yet
        return None


def _delivered_items(engine):
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT coalesce(sum(item_count), 0) FROM notifier.deliveries WHERE status = 'delivered'")).scalar()
