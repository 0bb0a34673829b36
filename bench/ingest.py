"""make bench-ingest: agent traffic into PostgreSQL through the batch consumer.

A simulated fleet publishes the real agent message format (docs/agent-protocol.md:
``system`` and ``dns`` messages, routing key ``stats.<kind>.<server_id>``,
persistent) to the ``steward.agent`` exchange. Printed:

* sustained messages/s stored: a backlog of MESSAGES is published, then the
  consumer (``python -m services.monitoring_ingest.consumer``) drains it into
  the database; and the same backlog, from the same publishers, drained by the
  same consumer run with ``--ack-only`` (acknowledges, stores nothing). Their
  ratio is the pipeline's efficiency; the consumer's CPU is measured too.
* p50/p99 lag from publish to commit at half the stored rate, live
  (``stored_at - collected_at``; the publishers stamp ``collected_at`` when
  they publish).
* heartbeats/s through the gateway (gunicorn) with 8 concurrent senders, each
  with its own server's agent token.

Targets on a 2-core machine: >= 3,000 messages/s stored, efficiency >= 0.7,
p99 lag <= 2 s at half that rate, >= 1,000 heartbeats/s.
"""
import http.client
import json
import multiprocessing
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

import pika

from bench.common import (
    CpuMeter, Processes, bench_environment, free_port, percentile, pids_named, process_cpu_seconds,
)

FLEET = 45_000
MESSAGES = 60_000
PUBLISHERS = 2
LAG_SECONDS = 15.0
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
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=2)
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


def queue_depth(amqp_uri):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        return connection.channel().queue_declare("monitoring.stats", passive=True).method.message_count
    finally:
        connection.close()


def stored_count(engine):
    from sqlalchemy import text

    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT (SELECT count(*) FROM monitoring.system_samples) + (SELECT count(*) FROM monitoring.dns_periods)"
        )).scalar()


def drain(processes, amqp_uri, engine, total, ack_only):
    """Start a consumer on a backlog of ``total``; the rate it drains it at, and its CPU."""
    before = 0 if ack_only else stored_count(engine)
    argv = [sys.executable, "-m", "services.monitoring_ingest.consumer"] + (["--ack-only"] if ack_only else [])
    consumer = processes.start("consumer-ack-only" if ack_only else "consumer", argv)
    while queue_depth(amqp_uri) >= total:  # until it starts taking messages
        time.sleep(0.02)
    started, cpu_before = time.perf_counter(), process_cpu_seconds(consumer.pid)
    if ack_only:
        while queue_depth(amqp_uri) > 0:
            time.sleep(0.02)
    else:
        while stored_count(engine) - before < total:
            time.sleep(0.05)
    elapsed = time.perf_counter() - started
    cpu = process_cpu_seconds(consumer.pid) - cpu_before
    return consumer, total / elapsed, cpu / elapsed, 1000 * cpu / total


def lag_percentiles(engine, since):
    from sqlalchemy import text

    with engine.connect() as connection:
        lags = connection.execute(text(
            "SELECT extract(epoch FROM stored_at - collected_at) FROM monitoring.system_samples WHERE stored_at > :s "
            "UNION ALL SELECT extract(epoch FROM stored_at - collected_at) FROM monitoring.dns_periods WHERE stored_at > :s"
        ), {"s": since}).scalars().all()
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
        sent, seconds = publish(settings.amqp_uri, MESSAGES, seq_base=0)
        print(f"published a backlog of {sent} in {seconds:.1f} s ({sent / seconds:.0f}/s)")
        consumer, ack_rate, ack_cpu, ack_ms = drain(processes, settings.amqp_uri, engine, sent, ack_only=True)
        consumer.terminate()
        consumer.wait(20)

        sent, seconds = publish(settings.amqp_uri, MESSAGES, seq_base=MESSAGES)
        print(f"published a backlog of {sent} in {seconds:.1f} s ({sent / seconds:.0f}/s)")
        consumer, stored_rate, store_cpu, store_ms = drain(processes, settings.amqp_uri, engine, sent, ack_only=False)
        print(f"ack-only: {ack_rate:8.0f} messages/s  (consumer CPU {100 * ack_cpu:.0f}% of a core, "
              f"{ack_ms:.3f} ms CPU per message)")
        print(f"stored:   {stored_rate:8.0f} messages/s  (consumer CPU {100 * store_cpu:.0f}% of a core, "
              f"{store_ms:.3f} ms CPU per message)", flush=True)

        # Live, at half the stored rate: publish -> commit lag.
        rate = stored_rate / 2
        since = datetime.now(timezone.utc)
        meter = CpuMeter({"consumer": lambda: [consumer.pid], "postgres": lambda: pids_named("postgres"),
                          "rabbitmq": lambda: pids_named("beam.smp")})
        meter.start()
        sent, seconds = publish(settings.amqp_uri, int(rate * LAG_SECONDS), rate=rate, seq_base=2 * MESSAGES)
        time.sleep(1.0)
        used, elapsed = meter.stop()
        count, lag50, lag99 = lag_percentiles(engine, since)

        # Heartbeats through the gateway: inventory authenticates the agent tokens (then cached).
        seed(settings.database_url, HEARTBEAT_SENDERS)
        processes.service("inventory")
        processes.service("monitoring_ingest")
        port = free_port()
        processes.gateway(port)
        wait_serving(port)
        rpc = RpcClient(settings.amqp_uri, caller="bench-ingest")
        with engine.connect() as db:
            from sqlalchemy import text

            server_ids = db.execute(text("SELECT id FROM inventory.servers ORDER BY id")).scalars().all()
        tokens = [(sid, rpc.call("inventory", "issue_agent_token", sid)["token"]) for sid in server_ids]
        rpc.close()
        heartbeats(port, tokens, 2.0)  # warm up both workers and their token caches
        hb_rate, hb50, hb99 = heartbeats(port, tokens, HEARTBEAT_SECONDS)

    efficiency = stored_rate / ack_rate
    print(f"efficiency (stored / ack-only): {efficiency:.2f}")
    print(f"lag publish -> commit at {rate:.0f} messages/s for {LAG_SECONDS:.0f} s ({count} messages): "
          f"p50 {lag50 * 1000:.0f} ms  p99 {lag99 * 1000:.0f} ms")
    print("  CPU (of one core) meanwhile: " + ", ".join(f"{k} {100 * v / elapsed:.0f}%" for k, v in used.items()))
    print(f"heartbeats through the gateway, {HEARTBEAT_SENDERS} senders: {hb_rate:.0f}/s  "
          f"p50 {hb50:.1f} ms  p99 {hb99:.1f} ms")
    print()
    for text_, ok in (
        (">= 3,000 messages/s stored", stored_rate >= 3000),
        ("efficiency >= 0.7", efficiency >= 0.7),
        ("p99 lag <= 2 s at half the stored rate", lag99 <= 2.0),
        (">= 1,000 heartbeats/s through the gateway", hb_rate >= 1000),
    ):
        print(f"  [{'met' if ok else 'MISSED'}] {text_}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
