"""make bench-agent: the agent's two hot paths, on real parts.

* DNS counting: knotd with mod-dnstap and the agent (pull mode) as real
  processes; SENDERS threads send QUERIES UDP queries for a spread of names at
  each of RATES. Printed: queries/s answered, how many the agent counted (and
  whether per record exactly), how long after the last answer the last count
  arrived, and the agent's CPU per 1,000 queries. Knot's dnstap writer drops
  frames when the reader falls behind, so a shortfall means the agent (or this
  shared 2-core machine) could not keep up with that rate.
* Push backlog: BACKLOG spooled messages drained by the agent's publisher to
  the machine's RabbitMQ with publisher confirms (vhost steward_bench_agent).
  Printed: messages/s confirmed.
"""
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

import pika

from agent.push import EXCHANGE, Publisher
from agent.spool import Spool
from bench.common import ROOT, process_cpu_seconds

# The tests' lab (knotd with dnstap, the agent as a process) serves the benchmark too.
sys.path.insert(0, str(ROOT / "tests" / "agent"))
from agent_lab import AgentProcess, Knot, dns_totals, free_port, http_get, wait_for  # noqa: E402

QUERIES = 30_000
SENDERS = 4
RATES = (2_000, 10_000, 20_000, None)  # queries/s offered to knotd; None: as fast as it answers
NAMES = [("www.test", 1), ("www.test", 28), ("pvverify.test", 16), ("mail.test", 15), ("missing.test", 1)]
BACKLOG = 5_000
VHOST = "steward_bench_agent"


def query_wire(qid, name, qtype):
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", qtype, 1)


def send(knot, count, offset, answered, rate):
    """``count`` queries, paced to ``rate`` per second (None: as fast as answers come)."""
    started = time.perf_counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(2)
        udp.connect((knot.address, knot.port))
        for i, n in enumerate(range(offset, offset + count)):
            if rate and i % 50 == 0:
                ahead = started + i / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            name, qtype = NAMES[n % len(NAMES)]
            udp.send(query_wire(n & 0xFFFF, name, qtype))
            udp.recv(4096)
            answered[(name + ".", qtype)] = answered.get((name + ".", qtype), 0) + 1


def bench_dns(directory, rate):
    dnstap_socket, port = os.path.join(directory, "dnstap.sock"), free_port()
    agent = AgentProcess(directory).start(
        "stats", server_id=1, agent_token="bench", communication_type="pull", dns_interval_seconds=1,
        system_interval_seconds=60, dnstap_socket=dnstap_socket, spool_dir=os.path.join(directory, "spool"),
        pull_listen="127.0.0.1", pull_port=port, spool_max_messages=1_000_000,
    )
    os.makedirs(os.path.join(directory, "knot"))
    knot = None
    try:
        wait_for(lambda: os.path.exists(dnstap_socket))
        knot = Knot(os.path.join(directory, "knot"), dnstap_socket).start()
        agent.wait_for_knot()
        cpu_before = process_cpu_seconds(agent.process.pid)
        per_sender = QUERIES // SENDERS
        answered = [dict() for _ in range(SENDERS)]
        sender_rate = rate / SENDERS if rate else None
        threads = [threading.Thread(target=send, args=(knot, per_sender, i * per_sender, answered[i], sender_rate))
                   for i in range(SENDERS)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        sent = SENDERS * per_sender
        expected = {}
        for part in answered:
            for key, count in part.items():
                expected[key] = expected.get(key, 0) + count
        url = "http://127.0.0.1:%d/v1/stats?limit=1000" % port
        items, cursor = [], [0]

        def counted():
            # Polls like monitoring-ingest: asking after a cursor lets the agent forget what came before.
            while True:
                page = http_get("%s&after=%d" % (url, cursor[0]), "bench")[1]
                items.extend(page["items"])
                if not page["items"]:
                    return dns_totals(items)[2] >= sent
                cursor[0] = page["next_cursor"]

        last_answer = time.perf_counter()
        try:
            wait_for(counted, timeout=10, interval=0.2)
            lag = "%.2f s" % (time.perf_counter() - last_answer)
        except AssertionError:
            lag = "never (waited 10 s)"
        time.sleep(1.5)
        counted()
        cpu = process_cpu_seconds(agent.process.pid) - cpu_before
        hits, _, total = dns_totals(items)
        names = {(name, qtype): count for (name, qtype), count in hits.items()}
        expected_named = {(name, {1: "A", 28: "AAAA", 16: "TXT", 15: "MX"}[qtype]): c for (name, qtype), c in expected.items()}
        print("dns counting at %s: %d queries answered by knotd in %.2f s (%.0f queries/s, %d senders)"
              % ("%d queries/s" % rate if rate else "full speed", sent, elapsed, sent / elapsed, SENDERS))
        print("  agent counted %d of %d (%.2f %%); per record exact: %s; all counted %s after the last answer"
              % (total, sent, 100.0 * total / sent, names == expected_named, lag))
        print("  agent CPU %.2f s (%.1f ms per 1,000 queries)" % (cpu, 1e6 * cpu / max(sent, 1)))
    finally:
        if knot:
            knot.stop()
        agent.stop()


def bench_push(directory):
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", VHOST], capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"], check=True, capture_output=True)
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", virtual_host=VHOST))
    channel = connection.channel()
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_delete("bench-agent-stats")
    channel.queue_declare("bench-agent-stats", durable=True)
    channel.queue_bind("bench-agent-stats", EXCHANGE, routing_key="stats.#")
    spool = Spool(os.path.join(directory, "push.sqlite3"), BACKLOG, 1)
    now = datetime.now(timezone.utc)
    for n in range(BACKLOG):
        spool.append("dns", now, {"period_start": now.isoformat(), "total": n, "records": []})
    publisher = Publisher(spool, {"host": "127.0.0.1", "port": 5672, "user": "guest", "password": "guest", "vhost": VHOST,
                                  "tls": False})
    stopping = threading.Event()
    thread = threading.Thread(target=publisher.run, args=(stopping,))
    started = time.perf_counter()
    thread.start()
    wait_for(lambda: spool.pending() == 0, timeout=300, interval=0.05)
    elapsed = time.perf_counter() - started
    stopping.set()
    thread.join()
    queued = channel.queue_declare("bench-agent-stats", passive=True).method.message_count
    channel.queue_delete("bench-agent-stats")
    connection.close()
    print("push backlog: %d spooled messages confirmed in %.2f s (%.0f messages/s), %d in the queue" % (
        BACKLOG, elapsed, BACKLOG / elapsed, queued))


def main():
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as directory:
        for rate in RATES:
            run = os.path.join(directory, "dns-%s" % (rate or "max"))
            os.makedirs(run)
            bench_dns(run, rate)
        bench_push(directory)


if __name__ == "__main__":
    main()
