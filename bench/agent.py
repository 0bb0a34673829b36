"""make bench-agent: the agent's two hot paths, on real parts.

* DNS counting: knotd with mod-dnstap and the agent (pull mode) as real
  processes; SENDERS processes send UDP queries for a spread of names at each
  of RATES for SECONDS (at least MIN_QUERIES), each keeping up to WINDOW queries
  in flight. Printed per rate: queries sent and answered by knotd, how many the
  agent counted and whether per record exactly, how long after the last answer
  the last count arrived, and the agent's CPU per 1,000 queries. Knot's dnstap
  writer drops frames when the reader falls behind, so a shortfall means the
  agent (or this shared 2-core machine) could not keep up with that rate.
* Push backlog: BACKLOG spooled messages drained by the agent's publisher to
  the machine's RabbitMQ with publisher confirms (vhost steward_bench_agent).
  Printed: messages/s confirmed.
"""
import multiprocessing
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

from agent.dnstap import decode_frames
from agent.push import EXCHANGE, Publisher
from agent.spool import Spool
from bench.common import ROOT, process_cpu_seconds

# The tests' lab (knotd with dnstap, the agent as a process) serves the benchmark too.
sys.path.insert(0, str(ROOT / "tests" / "agent"))
from agent_lab import AgentProcess, Knot, dns_totals, free_port, http_get, wait_for  # noqa: E402

RATES = (2_000, 10_000, 20_000, None)  # queries/s offered to knotd; None: as fast as it answers
SECONDS = 5  # of traffic per rate
MIN_QUERIES = 20_000
FULL_SPEED_QUERIES = 100_000
SENDERS = 8  # processes, a socket each: many clients, spread over knotd's UDP workers as real traffic is
WINDOW = 16  # queries in flight per sender
NAMES = [("www.test", 1), ("www.test", 28), ("pvverify.test", 16), ("mail.test", 15), ("missing.test", 1)]
TYPE_NAMES = {1: "A", 28: "AAAA", 16: "TXT", 15: "MX"}
BACKLOG = 5_000
VHOST = "steward_bench_agent"


def query_wire(qid, name, qtype):
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", qtype, 1)


WIRES = [query_wire(0, name, qtype)[2:] for name, qtype in NAMES]  # all but the id


def send(address, port, count, rate, results):
    """``count`` queries paced to ``rate`` per second (None: as fast as answers come), WINDOW in
    flight; puts (sent, answers per NAMES index) on ``results``. A query's id picks its name."""
    wires = WIRES
    answered = [0] * len(NAMES)
    sent = in_flight = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        udp.settimeout(2)
        udp.connect((address, port))
        started = time.perf_counter()
        while sent < count or in_flight:
            if sent < count and in_flight < WINDOW:
                ahead = started + sent / rate - time.perf_counter() if rate else 0
                if ahead <= 0 or not in_flight:
                    if ahead > 0:
                        time.sleep(ahead)
                    qid = sent & 0xFFFF
                    udp.send(struct.pack(">H", qid) + wires[qid % len(wires)])
                    sent += 1
                    in_flight += 1
                    continue
            try:
                answer = udp.recv(4096)
            except socket.timeout:
                break  # lost on the way: not counted as answered
            in_flight -= 1
            answered[struct.unpack_from(">H", answer)[0] % len(wires)] += 1
    results.put((sent, answered))


def queries_for(rate):
    return max(MIN_QUERIES, rate * SECONDS) if rate else FULL_SPEED_QUERIES


def offer(knot, rate):
    """Sends queries_for(rate) queries to knot from SENDERS processes: (sent, answers per record, seconds)."""
    per_sender = queries_for(rate) // SENDERS
    processes = multiprocessing.get_context("fork")
    results = processes.Queue()
    senders = [processes.Process(target=send, args=(knot.address, knot.port, per_sender, rate / SENDERS if rate else None,
                                                    results)) for _ in range(SENDERS)]
    started = time.perf_counter()
    for sender in senders:
        sender.start()
    outcomes = [results.get(timeout=600) for _ in senders]
    elapsed = time.perf_counter() - started
    for sender in senders:
        sender.join()
    expected = {}
    for _, answered in outcomes:
        for (name, qtype), count in zip(NAMES, answered):
            key = (name + ".", TYPE_NAMES[qtype])
            expected[key] = expected.get(key, 0) + count
    return sum(sent for sent, _ in outcomes), expected, elapsed


def knot_alone(directory, rate):
    """The same traffic with knotd's dnstap going to a file: the share of frames knotd itself delivers,
    which no reader can beat (its writer drops when its I/O thread is not scheduled in time)."""
    os.makedirs(os.path.join(directory, "knot"))
    tap = os.path.join(directory, "capture.tap")
    knot = Knot(os.path.join(directory, "knot"), None, file_sink=tap).start()
    try:
        _, expected, _ = offer(knot, rate)
    finally:
        knot.stop()  # flushes and closes the file
    with open(tap, "rb") as handle:
        stream = handle.read()
    wires, times = [], []
    start = 8 + struct.unpack_from(">I", stream, 4)[0]  # past the file's START control frame
    decode_frames(stream[start:], wires, times)
    return len(wires), sum(expected.values())


def bench_dns(directory, rate):
    """One rate's figures: (label, sent, answered, counted, exact, agent ms per 1,000 queries)."""
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
        sent, expected, elapsed = offer(knot, rate)
        last_answer = time.perf_counter()
        answered_total = sum(expected.values())
        url = "http://127.0.0.1:%d/v1/stats?limit=1000" % port
        items, cursor = [], [0]

        def counted():
            # Polls like monitoring-ingest: asking after a cursor lets the agent forget what came before.
            while True:
                page = http_get("%s&after=%d" % (url, cursor[0]), "bench")[1]
                items.extend(page["items"])
                if not page["items"]:
                    return dns_totals(items)[2] >= answered_total
                cursor[0] = page["next_cursor"]

        try:
            wait_for(counted, timeout=10, interval=0.2)
            lag = "%.2f s" % (time.perf_counter() - last_answer)
        except AssertionError:
            lag = "never (waited 10 s)"
        time.sleep(1.5)
        counted()
        cpu = process_cpu_seconds(agent.process.pid) - cpu_before
        hits, _, total = dns_totals(items)
        exact = hits == expected and total == answered_total
        label = "%d queries/s" % rate if rate else "full speed"
        per_thousand = 1e6 * cpu / max(answered_total, 1)
        print("dns counting at %s: %d queries sent, %d answered by knotd in %.2f s (%.0f queries/s, %d senders)"
              % (label, sent, answered_total, elapsed, answered_total / elapsed, SENDERS))
        print("  agent counted %d of %d (%.2f %%); per record exact: %s; all counted %s after the last answer"
              % (total, answered_total, 100.0 * total / max(answered_total, 1), exact, lag))
        print("  agent CPU %.2f s (%.1f ms per 1,000 queries)" % (cpu, per_thousand), flush=True)
        return "%s (%.0f/s)" % (label, answered_total / elapsed), sent, answered_total, total, exact, per_thousand
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
        rows = []
        for rate in RATES:
            run = os.path.join(directory, "dns-%s" % (rate or "max"))
            os.makedirs(run)
            row = bench_dns(run, rate)
            alone = os.path.join(directory, "knot-alone-%s" % (rate or "max"))
            os.makedirs(alone)
            delivered, answered = knot_alone(alone, rate)
            print("  knotd alone (dnstap to a file, same traffic): %d frames of %d answered (%.2f %%)"
                  % (delivered, answered, 100.0 * delivered / max(answered, 1)), flush=True)
            rows.append(row + ("%d/%d" % (delivered, answered),))
        print("\n%-26s %8s %8s %8s %6s %12s %16s" % (
            "offered (achieved)", "sent", "answered", "counted", "exact", "agent CPU ms", "knotd alone"))
        print("%-26s %8s %8s %8s %6s %12s %16s" % ("", "", "", "", "", "per 1,000 q", "to a file"))
        for label, sent, answered, counted, exact, per_thousand, alone in rows:
            print("%-26s %8d %8d %8d %6s %12.1f %16s" % (label, sent, answered, counted, "yes" if exact else "NO",
                                                         per_thousand, alone))
        if "--dns-only" not in sys.argv:
            bench_push(directory)


if __name__ == "__main__":
    main()
