"""make bench-ingest: agent traffic into PostgreSQL through the batch consumer.

A simulated fleet publishes the real agent message format (docs/agent-protocol.md:
``system`` and ``dns`` messages, routing key ``stats.<kind>.<server_id>``,
persistent) to the ``steward.agent`` exchange. Printed:

* the pipeline's efficiency: a backlog of MESSAGES queued before the consumer
  (``python -m services.monitoring_ingest.consumer``) starts, drained once
  stored and once by the same consumer run with ``--ack-only`` (acknowledges,
  stores nothing); a run ends when the last message is committed (or
  acknowledged). Stored / ack-only on the backlog is the efficiency: no
  publisher competes for the CPU, so it measures the pipeline. The
  publishers' own rate (filling the backlog, nothing consuming) is printed.
* sustained messages/s stored with the publishers sending as fast as they can
  meanwhile, and the same ack-only. These share the two cores with the
  publishers and vary: five rounds, alternating, and their medians (each
  round's figure too). A live ack-only run well below the backlog's ack-only
  rate is flagged: the publishers capped it, and its ratio is theirs.
  The consumer's CPU per message is measured in every run.
* p50/p99 lag from publish to commit at half the stored rate, live, over every
  message sent: the publishers stamp ``collected_at`` when they publish, and
  a commit is timed when a LISTEN on the database hears it (a statement
  trigger the benchmark adds to its own database NOTIFYs the transaction's
  id, and PostgreSQL delivers a NOTIFY at the commit).
* heartbeats/s through the gateway (gunicorn) with 8 concurrent senders, each
  with its own server's agent token.

Targets on a 2-core machine: >= 3,000 messages/s stored (live), efficiency
>= 0.7 (backlog), p99 lag <= 2 s at half the live stored rate, >= 1,000
heartbeats/s.
"""
import http.client
import json
import multiprocessing
import os
import random
import select
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone

import pika
import psycopg2

from bench.common import (
    CpuMeter, Processes, bench_environment, free_port, percentile, pids_named,
)

FLEET = 45_000
MESSAGES = 60_000
ROUNDS = 5
PUBLISHERS = 2
LAG_SECONDS = 15.0
# A live ack-only run below this share of the backlog's ack-only rate was capped by its publishers.
CAPPED_BELOW = 0.8
HEARTBEAT_SENDERS = 8
HEARTBEAT_SECONDS = 10.0
NAMES = [f"host{i}.example.com." for i in range(200)]


def agent_message(server_id, seq, kind, collected_at):
    if kind == "system":
        data = {"load": [round(random.random() * 2, 2), 0.5, 0.25],
                "disks": [{"mount": "/", "total_bytes": 50_000_000_000, "used_bytes": random.randint(1, 40_000_000_000)},
                          {"mount": "/var", "total_bytes": 20_000_000_000, "used_bytes": 5_000_000_000}],
                "swap": {"total_bytes": 2_000_000_000, "used_bytes": 1_000_000},
                "memory": {"total_bytes": 8_000_000_000, "available_bytes": 4_000_000_000, "used_bytes": 4_000_000_000},
                "connections": {"ESTABLISHED": random.randint(0, 50), "LISTEN": 6, "TIME_WAIT": 3}}
    else:
        records = [{"name": name, "type": "A", "hits": random.randint(1, 50), "last_access": collected_at.isoformat()}
                   for name in random.sample(NAMES, 5)]
        data = {"period_start": (collected_at - timedelta(seconds=60)).isoformat(),
                "total": sum(r["hits"] for r in records), "records": records}
    return {"v": 1, "kind": kind, "server_id": server_id, "seq": seq, "collected_at": collected_at.isoformat(),
            "data": data}


def _publisher(args):
    """One agent-side publisher for a slice of the fleet: ``count`` messages, at ``rate``/s (0: as fast as it can)."""
    amqp_uri, index, count, rate, seq_base = args
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    channel = connection.channel()
    # As a relay of the control plane (its own broker user), which monitoring-ingest takes for any server.
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                      user_id=pika.URLParameters(amqp_uri).credentials.username)
    started = time.perf_counter()
    for n in range(count):
        server_id = 1 + (index + n * PUBLISHERS) % FLEET
        kind = "dns" if n % 10 < 3 else "system"  # 70 % system, 30 % DNS
        body = json.dumps(agent_message(server_id, seq_base + n, kind, datetime.now(timezone.utc)))
        channel.basic_publish("steward.agent", f"stats.{kind}.{server_id}", body, properties)
        if rate and n % 20 == 0:
            ahead = started + n / rate - time.perf_counter()
            if ahead > 0:
                connection.sleep(ahead)
    connection.close()
    return count


def publish(amqp_uri, total, rate=0.0, seq_base=0):
    per = total // PUBLISHERS
    with multiprocessing.Pool(PUBLISHERS) as pool:
        started = time.perf_counter()
        sent = sum(pool.map(_publisher, [(amqp_uri, i, per, rate / PUBLISHERS, seq_base + i * per)
                                          for i in range(PUBLISHERS)]))
    return sent, time.perf_counter() - started


def queue_state(amqp_uri):
    """(messages ready, consumers) of the stats queue."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        method = connection.channel().queue_declare("monitoring.stats", passive=True).method
        return method.message_count, method.consumer_count
    finally:
        connection.close()


def stored_count(engine):
    from sqlalchemy import text

    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT (SELECT count(*) FROM monitoring.system_samples) + (SELECT count(*) FROM monitoring.dns_periods)"
        )).scalar()


def start_consumer(processes, amqp_uri, ack_only, stop_after=None):
    argv = [sys.executable, "-m", "services.monitoring_ingest.consumer"] + (["--ack-only"] if ack_only else [])
    argv += ["--stop-after", str(stop_after)] if stop_after else []
    consumer = processes.start("consumer-ack-only" if ack_only else "consumer", argv)
    while queue_state(amqp_uri)[1] == 0:  # until it consumes
        time.sleep(0.02)
    return consumer


def run(processes, amqp_uri, engine, ack_only, total, seq_base, live):
    """``total`` messages through a fresh consumer that stops once it has settled them all: published
    beforehand (a backlog to drain) or while it consumes (``live``, the publishers as fast as they can).
    Returns (messages/s, consumer ms CPU per message, the publishers' messages/s filling a backlog)."""
    before = stored_count(engine)
    publishers = None
    if not live:
        sent, seconds = publish(amqp_uri, total, seq_base=seq_base)
        publishers = sent / seconds
    consumer = start_consumer(processes, amqp_uri, ack_only, stop_after=total)
    started = time.perf_counter()
    if live:
        publish(amqp_uri, total, seq_base=seq_base)
    _, status, usage = os.wait4(consumer.pid, 0)  # it exits once every message is committed (or acknowledged)
    elapsed = time.perf_counter() - started
    consumer.returncode = status
    stored = stored_count(engine) - before
    if status or queue_state(amqp_uri)[0] or stored != (0 if ack_only else total):
        raise RuntimeError(f"consumer exit status {status}, {stored} of {total} stored, or messages left on the queue")
    return total / elapsed, 1000 * (usage.ru_utime + usage.ru_stime) / total, publishers


# Bench instrumentation in the benchmark's own database, never a migration: each statement that stores
# agent messages NOTIFYs its transaction's id, which PostgreSQL delivers when that transaction commits.
COMMIT_NOTICES = ["""
CREATE OR REPLACE FUNCTION monitoring.bench_commit_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_commit', (pg_current_xact_id()::text::bigint % 4294967296)::text);
    RETURN NULL;
END $$
"""] + [f"CREATE TRIGGER bench_commit_notice AFTER INSERT ON monitoring.{table} FOR EACH STATEMENT "
        "EXECUTE FUNCTION monitoring.bench_commit_notice()" for table in ("system_samples", "dns_periods")]


class CommitClock:
    """When each transaction that stored agent messages committed, as a LISTEN on the database hears it."""

    def __init__(self, database_url):
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        self.connection = psycopg2.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                                           dbname=url.database)
        self.connection.autocommit = True
        with self.connection.cursor() as cursor:
            for statement in COMMIT_NOTICES:
                cursor.execute(statement)
            cursor.execute("LISTEN bench_commit")
        self.committed_at = {}  # transaction id (as xmin shows it) -> Unix time the commit was heard
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self):
        while not self._stop.is_set():
            if select.select([self.connection], [], [], 0.1)[0]:
                self.connection.poll()
                heard = time.time()
                while self.connection.notifies:
                    self.committed_at.setdefault(self.connection.notifies.pop(0).payload, heard)

    def close(self):
        self._stop.set()
        self._thread.join()
        with self.connection.cursor() as cursor:
            for table in ("system_samples", "dns_periods"):
                cursor.execute(f"DROP TRIGGER bench_commit_notice ON monitoring.{table}")
        self.connection.close()


def lag_percentiles(engine, clock, since, first_seq, sent, seconds=120):
    """Publish-to-commit lag of every message of the run (seq from ``first_seq``, ``sent`` of them), once
    all are stored and every commit was heard."""
    from sqlalchemy import text

    query = text(
        "SELECT xmin::text, extract(epoch FROM collected_at) FROM monitoring.system_samples "
        "WHERE collected_at >= :since AND seq >= :first "
        "UNION ALL SELECT xmin::text, extract(epoch FROM collected_at) FROM monitoring.dns_periods "
        "WHERE collected_at >= :since AND seq >= :first")
    deadline = time.monotonic() + seconds
    while True:
        with engine.connect() as connection:
            rows = connection.execute(query, {"since": since, "first": first_seq}).all()
        if len(rows) >= sent and all(xid in clock.committed_at for xid, _ in rows):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"after {seconds} s, {len(rows)} of {sent} messages stored and "
                               f"{sum(xid in clock.committed_at for xid, _ in rows)} of their commits heard")
        time.sleep(0.2)
    lags = [clock.committed_at[xid] - float(collected) for xid, collected in rows]
    return len(lags), percentile(lags, 0.5), percentile(lags, 0.99)


def _heartbeat_sender(args):
    port, token, server_id, duration, barrier = args
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies, seq = [], 0
    barrier.wait()
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        seq += 1
        body = json.dumps({"v": 1, "kind": "heartbeat", "server_id": server_id, "seq": seq,
                           "collected_at": datetime.now(timezone.utc).isoformat(),
                           "data": {"agent_version": "1.0.0", "versions": {"dns": "3.2.6", "monitor": "1.0.0"}}})
        started = time.perf_counter()
        connection.request("POST", "/api/v2/monitoring/heartbeat", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 202:
            raise RuntimeError(f"HTTP {response.status}: {answer[:200]!r}")
    return latencies


def heartbeats(port, tokens, duration):
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(len(tokens))
        with multiprocessing.Pool(len(tokens)) as pool:
            results = pool.map(_heartbeat_sender, [(port, token, sid, duration, barrier) for sid, token in tokens])
    latencies = [x for r in results for x in r]
    return len(latencies) / duration, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


def wait_serving(port, seconds=60):
    """/healthz wants every service up; this benchmark runs only the two the heartbeat path needs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/v2/openapi.json")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the gateway did not start")


def wait_for_service(rpc, service, seconds=60):
    from shared.errors import ServiceUnavailable

    deadline = time.monotonic() + seconds
    while True:
        try:
            return rpc.call(service, "health")
        except ServiceUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main():
    env = bench_environment("steward_bench_ingest")
    from bench.gateway import seed
    from services.monitoring_ingest.topology import declare_agent_topology
    from shared.config import load_settings
    from shared.db import make_engine
    from shared.migrations import upgrade
    from shared.rpc import RpcClient

    settings = load_settings()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url, pool_size=1)
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_uri))
    declare_agent_topology(connection.channel())
    connection.close()
    print(f"fleet of {FLEET} servers; {MESSAGES} messages per run (70 % system, 30 % DNS with 5 records)")

    with Processes(env, tempfile.mkdtemp(prefix="steward-bench-ingest-")) as processes:
        # The live runs share two cores with the publishers and the broker, so they vary from run to
        # run: five rounds, ack-only and stored alternating, and the median of each.
        results, seq = {}, 0
        for live, rounds in ((False, 1), (True, ROUNDS)):
            for _ in range(rounds):
                for ack_only in (True, False):
                    results.setdefault((live, ack_only), []).append(
                        run(processes, settings.amqp_uri, engine, ack_only, MESSAGES, seq, live))
                    seq += MESSAGES
        publishers = statistics.median(r[2] for r in results[False, False] + results[False, True])
        print(f"publishers alone (filling the backlog, nothing consuming): {publishers:.0f} messages/s")
        backlog_ack_only = results[False, True][0][0]
        rates = {}
        for live, what in ((False, "a backlog of"), (True, "publishers sending")):
            rounds = f", median of {ROUNDS} rounds" if live else ""
            print(f"{what} {MESSAGES} messages{' as fast as they can' if live else ''}{rounds}:")
            for ack_only, label in ((True, "ack-only"), (False, "stored  ")):
                runs = results[live, ack_only]
                rate, ms = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
                each = f"  [{', '.join(f'{r[0]:.0f}' for r in runs)}]" if live else ""
                print(f"  {label} {rate:8.0f} messages/s  (consumer {ms:.3f} ms CPU per message){each}")
                rates[live, ack_only] = rate
            ratio = rates[live, False] / rates[live, True]
            if not live:
                print(f"  efficiency (stored / ack-only on the backlog): {ratio:.2f}", flush=True)
                continue
            capped = [r[0] for r in results[True, True] if r[0] < CAPPED_BELOW * backlog_ack_only]
            print(f"  ratio stored / ack-only, live: {ratio:.2f}", flush=True)
            if capped:
                print(f"  [capped] {len(capped)} of {ROUNDS} live ack-only runs below {CAPPED_BELOW:.0%} of the backlog's "
                      f"ack-only {backlog_ack_only:.0f}/s: the publishers set those rates, so the live ratio is "
                      "theirs, not the pipeline's")
        stored_rate = rates[True, False]
        efficiency = rates[False, False] / rates[False, True]

        # Live, at half the stored rate: publish -> commit lag of every message.
        rate = stored_rate / 2
        consumer = start_consumer(processes, settings.amqp_uri, ack_only=False)
        clock = CommitClock(settings.database_url)
        since = datetime.now(timezone.utc)
        meter = CpuMeter({"consumer": lambda: [consumer.pid], "postgres": lambda: pids_named("postgres"),
                          "rabbitmq": lambda: pids_named("beam.smp")})
        meter.start()
        sent, seconds = publish(settings.amqp_uri, int(rate * LAG_SECONDS), rate=rate, seq_base=seq)
        used, elapsed = meter.stop()
        count, lag50, lag99 = lag_percentiles(engine, clock, since, seq, sent)
        clock.close()

        # Heartbeats through the gateway: inventory authenticates the agent tokens (then cached).
        seed(settings.database_url, HEARTBEAT_SENDERS)
        processes.service("inventory")
        processes.service("monitoring_ingest")
        port = free_port()
        processes.gateway(port)
        wait_serving(port)
        rpc = RpcClient(settings.amqp_uri, caller="bench-ingest")
        wait_for_service(rpc, "inventory")
        with engine.connect() as db:
            from sqlalchemy import text

            server_ids = db.execute(text("SELECT id FROM inventory.servers ORDER BY id")).scalars().all()
        from shared.crypto import AGENT_TOKEN, SecretBox

        box = SecretBox(settings.secret_key)  # inventory hands agent tokens over sealed, as to the provisioner
        tokens = [(sid, box.open_sealed(AGENT_TOKEN, rpc.call("inventory", "issue_agent_token", sid)["token"]))
                  for sid in server_ids]
        rpc.close()
        heartbeats(port, tokens, 2.0)  # warm up both workers and their token caches
        rounds = [heartbeats(port, tokens, HEARTBEAT_SECONDS) for _ in range(ROUNDS)]
        hb_rate, hb50, hb99 = (statistics.median(r[i] for r in rounds) for i in range(3))

    print(f"efficiency (stored / ack-only, draining a backlog): {efficiency:.2f}")
    print(f"lag publish -> commit at {rate:.0f} messages/s for {LAG_SECONDS:.0f} s (all {count} of {sent} messages): "
          f"p50 {lag50 * 1000:.0f} ms  p99 {lag99 * 1000:.0f} ms")
    print("  CPU (of one core) meanwhile: " + ", ".join(f"{k} {100 * v / elapsed:.0f}%" for k, v in used.items()))
    print(f"heartbeats through the gateway, {HEARTBEAT_SENDERS} senders, median of {ROUNDS} rounds of "
          f"{HEARTBEAT_SECONDS:.0f} s: {hb_rate:.0f}/s  p50 {hb50:.1f} ms  p99 {hb99:.1f} ms  "
          f"[{', '.join(f'{r[0]:.0f}' for r in rounds)}]")
    print()
    for text_, ok in (
        (">= 3,000 messages/s stored, live", stored_rate >= 3000),
        ("efficiency >= 0.7 (backlog)", efficiency >= 0.7),
        ("p99 lag <= 2 s at half the stored rate", lag99 <= 2.0),
        (">= 1,000 heartbeats/s through the gateway", hb_rate >= 1000),
    ):
        print(f"  [{'met' if ok else 'MISSED'}] {text_}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
