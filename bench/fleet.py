"""make bench-fleet N=...: a fleet of N simulated agents against the whole stack, while operators use it.

The stack (every service, the ingest consumer, the gateway under gunicorn) runs as real processes on a
database and vhost of its own (``steward_bench_fleet`` + ``STEWARD_BENCH_SUFFIX``). N servers are seeded
in inventory, each with its own agent token (stored hashed, as ``issue_agent_token`` stores it).

The simulator (SIM_PROCESSES processes, asyncio, its CPU measured apart) plays the N agents with the
agent's own envelope (``agent.messages.envelope``; tests/unit/test_bench_fleet.py holds its messages to
the real validation):

* a heartbeat every 30 s per agent, spread evenly, POSTed with the server's own agent token over a pool of
  HTTP_CONNECTIONS keep-alive connections per process (one connection carries many agents' heartbeats,
  where a real agent opens its own; the gateway's work per heartbeat is the same). Open loop: a heartbeat
  is due on the schedule whatever the gateway's pace, and one sent more than 2 s after it was due is late;
* a ``system`` and a ``dns`` message every 60 s per agent, spread evenly, published to ``steward.agent``
  with publisher confirms, pipelined (up to MAX_UNCONFIRMED in flight per connection). SAMPLE_BROKER_USERS
  servers publish as their own broker user (made through the management API, as the provisioner makes
  them, each on its own connection); the rest share one connection per simulator process as the control
  plane's broker user, which monitoring-ingest accepts for any server (the relay the poller uses). DNS
  records are drawn from a Zipf distribution over NAMES names: a few hot names, a long tail.
* 1 % of the agents misbehave (BAD): a wrong agent token, malformed messages, or a clock 10 minutes
  ahead. Their heartbeats must be refused (HTTP 401/400) and their statistics dead-lettered with a reason
  (``monitoring.dead``); both are counted.
* 1 % of the well-behaved agents go silent (heartbeats and statistics) SILENCE_AT seconds into the run.
  Each must go ``down`` (monitoring's default: 90 s without a heartbeat) with exactly one
  ``server_state_changed`` (counted in monitoring's outbox), and nobody else may.

By default the fleet was running before the run (warm): the good and the later silent agents are marked up in
monitoring's liveness, each with its last heartbeat one interval before its first in the run, and their
components as their heartbeats report them in inventory, so the run measures a fleet in its steady state.
``--cold`` (``make bench-fleet COLD=1``) measures a fleet's first contact instead: no server heard before, so
every agent's first heartbeat is an up transition and a versions report, N of each within one interval, which
monitoring-ingest, inventory and the notifier each take one by one.

Meanwhile operators list and search the fleet (LIST_RATE requests/s from two clients, the realistic mix of
bench/gateway.py) and open a server's details with its monitoring charts (DETAIL_RATE a second: the server,
its system and DNS series of the last hour and its heartbeats, four requests timed as one).

Printed per window (WINDOW seconds) and overall: heartbeats and statistics offered (the schedule's rate) /
accepted (HTTP 202, broker confirm) / stored (rows inserted) per second; the queues' backlog; the lag from
collected_at (stamped as the simulator publishes) to stored_at (the row's insert, in the batch that commits
it) p50/p99; list and details p50/p99; CPU (% of one core) and private memory (RssAnon) per process group,
the simulator's own apart. RabbitMQ and PostgreSQL serve every engineer on this machine: RabbitMQ's CPU is
the whole broker's, PostgreSQL's is split into this database's backends and the server's shared processes.
After the run: down detection p50/p99/max, events per silenced server, false downs, refused and
dead-lettered counts, raw data's growth per hour, and one retention pass that drops the run's raw
partitions, timed.

``--ramp`` runs N = 10,000, 30,000, 100,000 (and on, twice and four times, while it holds; when the first step
does not hold, down by thirds to 300 until one does) and prints a table; a run holds when
the backlog does not grow, lag p99 <= 2 s, list p99 <= 50 ms, every silenced server went down within 95 s
of its last heartbeat with exactly one event, no false down, and the simulator kept its schedule.
"""
import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import threading
import time
from bisect import bisect
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from types import SimpleNamespace

from agent.messages import envelope, iso

HEARTBEAT_INTERVAL = 30.0
STATS_INTERVAL = 60.0
WINDOW = 30.0
SILENCE_AT = 40.0  # seconds into the run: every agent has beaten at least once
SILENCE_FOR = 110.0  # the run goes on this long after: >= 95 s of silence, and the sweep's second
DRAIN_SECONDS = 60.0
SIM_PROCESSES = 2
SAMPLE_BROKER_USERS = 20
MAX_UNCONFIRMED = 2000
HTTP_CONNECTIONS = 64  # per simulator process: heartbeats in flight at once
TICK = 0.05  # the schedules wake at most this often and send everything due meanwhile at once
RECORD_SETS = 2048  # DNS record sets drawn per simulator process at its start; each message takes one at random
LIST_RATE = 5.0
DETAIL_RATE = 1.0
NAMES = 5000
ZIPF_S = 1.1
RECORDS_PER_PERIOD = (3, 40)
SKEW = timedelta(minutes=10)
RAMP = (10_000, 30_000, 100_000)
MIN_STEP = 300
# Roles by position in the fleet (index % 100): 1 % bad, 1 % silenced, the rest well-behaved.
BAD_SLOT, SILENT_SLOT = 37, 73
BAD_KINDS = ("wrong_token", "malformed", "skewed")
# Targets that define "holds".
LAG_P99_MAX, LIST_P99_MAX, DOWN_MAX = 2.0, 0.050, 95.0

COUNTERS = ("hb_sent", "hb_accepted", "hb_refused", "hb_failed", "hb_late", "st_sent", "st_confirmed",
            "st_nacked", "st_bad_sent", "lateness_ms_max")


def role(index):
    slot = index % 100
    if slot == BAD_SLOT:
        return BAD_KINDS[(index // 100) % len(BAD_KINDS)]
    return "silent" if slot == SILENT_SLOT else "good"


# -- the agents' messages ---------------------------------------------------------------------------------
class Records:
    """DNS records with Zipf-distributed popularity: a few names take most queries, a long tail the rest."""

    def __init__(self, count=NAMES, s=ZIPF_S):
        self.names = [f"www{i}.zone{i % 97}.example." if i % 3 else f"host{i}.example.com." for i in range(count)]
        self.types = ["A", "AAAA", "A", "MX", "A", "TXT", "A", "AAAA"]
        self.cumulative = list(accumulate(1.0 / (rank + 1) ** s for rank in range(count)))

    def draw(self, rng, k):
        total = self.cumulative[-1]
        picked = {}
        for _ in range(k):
            i = bisect(self.cumulative, rng.random() * total)
            key = (self.names[i], self.types[i % len(self.types)])
            picked[key] = picked.get(key, 0) + max(1, int(1000 / (i + 1)) + rng.randint(0, 5))
        return picked


def heartbeat_message(server_id, seq, now):
    return envelope("heartbeat", server_id, seq, now,
                    {"agent_version": "1.4.0", "versions": {"dns": "3.2.6", "monitor": "1.4.0"}})


def _template(message, **slots):
    """``message``'s JSON with each of ``slots``' values (unique in it) turned into a %-format slot: the same bytes
    as json.dumps gives, at a fraction of its cost per message."""
    text = json.dumps(message).replace("%", "%%")
    for name, value in slots.items():
        rendered = json.dumps(value)
        assert text.count(rendered) == 1, name
        text = text.replace(rendered, f"%({name})s")
    return text


_EPOCH = datetime(2001, 2, 3, tzinfo=timezone.utc)  # the templates' sentinel values: each unique in its message
_HEARTBEAT = _template(heartbeat_message(987654321, 123456789, _EPOCH), server_id=987654321, seq=123456789,
                       collected_at=iso(_EPOCH))


def heartbeat_body(server_id, seq, now):
    """json.dumps(heartbeat_message(server_id, seq, now)).encode(), as the simulator sends it thousands of times a second."""
    return (_HEARTBEAT % {"server_id": server_id, "seq": seq, "collected_at": f'"{iso(now)}"'}).encode()


def system_message(server_id, seq, now, rng):
    total = 50_000_000_000
    return envelope("system", server_id, seq, now, {
        "load": [round(rng.random() * 2, 2), 0.5, 0.25],
        "disks": [{"mount": "/", "total_bytes": total, "used_bytes": rng.randint(1, 40_000_000_000)},
                  {"mount": "/var", "total_bytes": 20_000_000_000, "used_bytes": 5_000_000_000}],
        "swap": {"total_bytes": 2_000_000_000, "used_bytes": 1_000_000},
        "memory": {"total_bytes": 8_000_000_000, "available_bytes": 4_000_000_000, "used_bytes": 4_000_000_000},
        "connections": {"ESTABLISHED": rng.randint(0, 50), "LISTEN": 6, "TIME_WAIT": 3}})


def dns_message(server_id, seq, now, rng, records, picked=None):
    """``picked``: the record set ({(name, type): hits}), else drawn here."""
    picked = picked if picked is not None else records.draw(rng, rng.randint(*RECORDS_PER_PERIOD))
    last = iso(now)
    rows = [{"name": name, "type": kind, "hits": hits, "last_access": last} for (name, kind), hits in picked.items()]
    return envelope("dns", server_id, seq, now, {"period_start": iso(now - timedelta(seconds=STATS_INTERVAL)),
                                                  "total": sum(r["hits"] for r in rows), "records": rows})


_SYSTEM = _template(system_message(987654321, 123456789, _EPOCH, SimpleNamespace(random=lambda: 0.61725, randint=lambda a, b: b - 3)),
                    server_id=987654321, seq=123456789, collected_at=iso(_EPOCH), load=1.23, used=39_999_999_997,
                    established=47)
_DNS = _template(envelope("dns", 987654321, 123456789, _EPOCH, {"period_start": "2001-02-02T23:59:00+00:00",
                                                                "total": 555555555, "records": ["records"]}),
                 server_id=987654321, seq=123456789, collected_at=iso(_EPOCH), period_start="2001-02-02T23:59:00+00:00",
                 total=555555555, records=["records"])
_LAST_ACCESS = json.dumps("last-access")


def system_body(server_id, seq, now, rng):
    """json.dumps(system_message(server_id, seq, now, rng)), drawing from ``rng`` as it does."""
    return _SYSTEM % {"server_id": server_id, "seq": seq, "collected_at": f'"{iso(now)}"',
                      "load": round(rng.random() * 2, 2), "used": rng.randint(1, 40_000_000_000),
                      "established": rng.randint(0, 50)}


def rendered_records(picked):
    """A record set ({(name, type): hits}) as (total, its rows' JSON with a slot for last_access), once per set."""
    rows = [{"name": name, "type": kind, "hits": hits, "last_access": "last-access"} for (name, kind), hits in picked.items()]
    return sum(picked.values()), json.dumps(rows)


def dns_body(server_id, seq, now, rendered):
    """json.dumps(dns_message(server_id, seq, now, ..., picked)) for ``rendered`` = rendered_records(picked)."""
    total, rows = rendered
    collected = f'"{iso(now)}"'
    return _DNS % {"server_id": server_id, "seq": seq, "collected_at": collected,
                   "period_start": f'"{iso(now - timedelta(seconds=STATS_INTERVAL))}"', "total": total,
                   "records": rows.replace(_LAST_ACCESS, collected)}


def bad_message(kind, message):
    """What a misbehaving agent sends instead of ``message`` (refused by the gateway or dead-lettered)."""
    if kind == "malformed":
        return dict(message, data=dict(message["data"], load="high") if message["kind"] == "system"
                    else {"agent_version": ""} if message["kind"] == "heartbeat" else dict(message["data"], total=-1))
    if kind == "skewed":
        ahead = datetime.fromisoformat(message["collected_at"]) + SKEW
        return dict(message, collected_at=iso(ahead))
    if kind == "wrong_token":  # on the broker: a body that speaks for another server than its routing key
        return dict(message, server_id=message["server_id"] + 1)
    return message


# -- the simulator (child processes) ----------------------------------------------------------------------
class _Counters:
    def __init__(self, shared):
        self.shared = shared
        self.index = {name: i for i, name in enumerate(COUNTERS)}

    def add(self, name, n=1):
        self.shared[self.index[name]] += n

    def most(self, name, value):
        i = self.index[name]
        if value > self.shared[i]:
            self.shared[i] = value


class _Clock:
    def __init__(self, start_at, silence_at, stop_at):
        self.start_at, self.silence_at, self.stop_at = start_at, silence_at, stop_at

    async def until(self, moment, tick=0.0):
        """Sleeps until ``moment``, but at least ``tick``: a schedule then wakes once per tick for what is due."""
        delay = moment - time.time()
        if delay > 0:
            await asyncio.sleep(max(delay, tick))


def simulator_share(agents, i):
    """The agents simulator process ``i`` plays."""
    return agents[i::SIM_PROCESSES]


def heartbeat_due(start_at, k, count):
    """When the ``k``-th heartbeat of a simulator playing ``count`` agents is due (agent ``k % count``'s): each
    agent every HEARTBEAT_INTERVAL, spread evenly. A negative ``k`` is before the run (warm, mark_heard)."""
    return start_at + k * HEARTBEAT_INTERVAL / count


async def _heartbeat_schedule(agents, clock, due_queue, counters):
    """Each agent's heartbeat every HEARTBEAT_INTERVAL, spread evenly, put on ``due_queue`` when due: open loop,
    so a slow gateway makes heartbeats late (counted) rather than fewer."""
    seq = {}
    k = 0
    while True:
        due = heartbeat_due(clock.start_at, k, len(agents))
        if due >= clock.stop_at:
            break
        await clock.until(due, TICK)
        server_id, token, kind = agents[k % len(agents)]
        k += 1
        if kind == "silent" and due >= clock.silence_at:
            continue
        seq[server_id] = seq.get(server_id, 0) + 1
        due_queue.put_nowait((due, server_id, token, kind, seq[server_id]))


async def _heartbeat_sender(port, due_queue, clock, counters):
    """One keep-alive connection sending whatever heartbeat is due next, until the run ends."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            try:
                due, server_id, token, kind, seq = await asyncio.wait_for(due_queue.get(), clock.stop_at - time.time())
            except (asyncio.TimeoutError, ValueError):
                break
            if time.time() >= clock.stop_at:
                break
            now = datetime.now(timezone.utc)
            if kind in ("malformed", "skewed"):
                body = json.dumps(bad_message(kind, heartbeat_message(server_id, seq, now))).encode()
            else:
                body = heartbeat_body(server_id, seq, now)
            if kind == "wrong_token":
                token = "0" * len(token)
            late = time.time() - due
            counters.most("lateness_ms_max", int(late * 1000))
            if late > 2.0:
                counters.add("hb_late")
            writer.write(b"POST /api/v2/monitoring/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nAuthorization: Bearer " + token.encode()
                         + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            counters.add("hb_sent")
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError):
                counters.add("hb_failed")
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            if status == 202:
                counters.add("hb_accepted")
            elif 400 <= status < 500:
                counters.add("hb_refused")
            else:
                counters.add("hb_failed")
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


class _ConfirmingPublisher:
    """A channel in confirm mode on an asyncio connection: publishes without waiting, counts confirms."""

    def __init__(self, counters):
        self.counters = counters
        self.unconfirmed = OrderedDict()  # delivery tag -> None, in publishing order
        self.next_tag = 0
        self.room = asyncio.Event()
        self.room.set()

    async def open(self, amqp_uri):
        import pika
        from pika.adapters.asyncio_connection import AsyncioConnection

        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        parameters = pika.URLParameters(amqp_uri)
        self.properties = pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                               user_id=parameters.credentials.username)

        def on_channel(channel):
            self.channel = channel
            channel.confirm_delivery(self._on_confirm, callback=lambda _frame: ready.set_result(None))

        def on_error(_connection, error):
            if not ready.done():
                ready.set_exception(RuntimeError(f"AMQP connection failed: {error}"))

        self.connection = AsyncioConnection(parameters, on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
                                            on_open_error_callback=on_error, custom_ioloop=loop)
        await ready

    def _on_confirm(self, frame):
        method = frame.method
        acked = method.NAME == "Basic.Ack"
        settled = 0
        if method.multiple:  # every tag up to this one: they are the oldest
            while self.unconfirmed and next(iter(self.unconfirmed)) <= method.delivery_tag:
                self.unconfirmed.popitem(last=False)
                settled += 1
        elif self.unconfirmed.pop(method.delivery_tag, 0) is None:
            settled = 1
        self.counters.add("st_confirmed" if acked else "st_nacked", settled)
        if len(self.unconfirmed) < MAX_UNCONFIRMED:
            self.room.set()

    async def publish(self, key, body):
        while len(self.unconfirmed) >= MAX_UNCONFIRMED:
            self.room.clear()
            await self.room.wait()
        self.channel.basic_publish("steward.agent", key, body, self.properties)
        self.next_tag += 1
        self.unconfirmed[self.next_tag] = None
        self.counters.add("st_sent")

    async def drain(self, seconds=30.0):
        deadline = time.time() + seconds
        while self.unconfirmed and time.time() < deadline:
            await asyncio.sleep(0.05)
        self.connection.close()


async def _statistics(publisher, agents, offset, clock, counters, rng, record_sets):
    """``agents``' system and DNS messages, each agent every STATS_INTERVAL, through one publisher; each DNS
    message takes one of ``record_sets`` (drawn from the Zipf distribution at the start) at random."""
    if not agents:
        return
    spacing = STATS_INTERVAL / len(agents)
    seq = {}
    k = 0
    while True:
        due = clock.start_at + offset + k * spacing
        if due >= clock.stop_at or time.time() >= clock.stop_at:
            break
        await clock.until(due, TICK)
        server_id, _, kind = agents[k % len(agents)]
        k += 1
        if kind == "silent" and due >= clock.silence_at:
            continue
        now = datetime.now(timezone.utc)
        n = seq[server_id] = seq.get(server_id, 0) + 1
        picked, rendered = rng.choice(record_sets)
        if kind in BAD_KINDS:
            for message in (system_message(server_id, n, now, rng), dns_message(server_id, n, now, rng, None, picked)):
                counters.add("st_bad_sent")
                await publisher.publish(f"stats.{message['kind']}.{server_id}", json.dumps(bad_message(kind, message)))
            continue
        await publisher.publish(f"stats.system.{server_id}", system_body(server_id, n, now, rng))
        await publisher.publish(f"stats.dns.{server_id}", dns_body(server_id, n, now, rendered))
    await publisher.drain()


async def _simulate(port, amqp_uri, agents, own_users, clock, counters, seed):
    rng = random.Random(seed)
    records = Records()
    record_sets = []
    for _ in range(RECORD_SETS):
        picked = records.draw(rng, rng.randint(*RECORDS_PER_PERIOD))
        record_sets.append((picked, rendered_records(picked)))
    due_queue = asyncio.Queue()
    tasks = [_heartbeat_schedule(agents, clock, due_queue, counters)]
    tasks += [_heartbeat_sender(port, due_queue, clock, counters) for _ in range(HTTP_CONNECTIONS)]
    shared = _ConfirmingPublisher(counters)
    await shared.open(amqp_uri)
    own = {server_id for server_id, _ in own_users}
    tasks.append(_statistics(shared, [a for a in agents if a[0] not in own], 0.0, clock, counters, rng, record_sets))
    for server_id, uri in own_users:
        publisher = _ConfirmingPublisher(counters)
        await publisher.open(uri)
        tasks.append(_statistics(publisher, [a for a in agents if a[0] == server_id], rng.random() * STATS_INTERVAL,
                                 clock, counters, rng, record_sets))
    await asyncio.gather(*tasks)


def _simulator_process(port, amqp_uri, agents, own_users, times, shared, seed):
    asyncio.run(_simulate(port, amqp_uri, agents, own_users, _Clock(*times), _Counters(shared), seed))


# -- operators --------------------------------------------------------------------------------------------
class Operators:
    """List/search from two clients (LIST_RATE in all) and details with charts (DETAIL_RATE), timed."""

    def __init__(self, port, token, server_ids):
        from bench.gateway import realistic_paths

        self.port, self.token = port, token
        self.paths = realistic_paths()
        self.server_ids = server_ids
        self.stop = threading.Event()
        self.samples = {"list": [], "details": []}  # (wall time, seconds)
        self.errors = 0
        self.threads = [threading.Thread(target=self._lists, args=(i,), daemon=True) for i in range(2)]
        self.threads.append(threading.Thread(target=self._details, daemon=True))

    def _get(self, connection, path):
        connection.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            self.errors += 1

    def _paced(self, rate, offset, action):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        started, n = time.perf_counter() + offset, 0
        while not self.stop.is_set():
            ahead = started + n / rate - time.perf_counter()
            if ahead > 0 and self.stop.wait(ahead):
                break
            began = time.perf_counter()
            try:
                kind = action(connection, n)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                kind = None
            if kind:
                self.samples[kind].append((time.time(), time.perf_counter() - began))
            n += 1

    def _lists(self, client):
        def one(connection, n):
            self._get(connection, self.paths[(client * 97 + n) % len(self.paths)])
            return "list"
        self._paced(LIST_RATE / 2, client / LIST_RATE, one)

    def _details(self):
        rng = random.Random(7)

        def one(connection, n):
            server_id = rng.choice(self.server_ids)
            for path in (f"/api/v2/servers/{server_id}", f"/api/v2/monitoring/servers/{server_id}/system",
                         f"/api/v2/monitoring/servers/{server_id}/dns",
                         f"/api/v2/monitoring/servers/{server_id}/heartbeats"):
                self._get(connection, path)
            return "details"
        self._paced(DETAIL_RATE, 0.3, one)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def between(self, kind, start, end):
        return [seconds for at, seconds in self.samples[kind] if start <= at < end]


# -- measuring --------------------------------------------------------------------------------------------
def seed_fleet(database_url, count):
    """``count`` servers (bench/gateway.py's seed) and an agent token each; returns [(server_id, token)]."""
    from sqlalchemy import text

    from bench.gateway import seed, seed_agent_tokens
    from shared.db import make_engine

    seed(database_url, count)
    engine = make_engine(database_url, pool_size=1)
    with engine.connect() as connection:
        ids = connection.execute(text("SELECT id FROM inventory.servers ORDER BY id")).scalars().all()
    engine.dispose()
    return sorted(seed_agent_tokens(database_url, ids).items())


RUNNING_VERSIONS = {"dns": "3.2.6", "monitor": "1.4.0"}  # what a good agent's heartbeat reports


def mark_installed(engine, server_ids):
    """The servers' components as a heartbeat of theirs recorded them (inventory's record_reported_versions):
    a fleet that was running before the run (warm)."""
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO inventory.server_components (server_id, name, version, state) "
            "SELECT s, c.key, c.value, 'running' FROM unnest(CAST(:ids AS int[])) AS s, jsonb_each_text(CAST(:v AS jsonb)) AS c "
            "ON CONFLICT (server_id, name) DO UPDATE SET version = excluded.version, state = 'running'"),
            {"ids": server_ids, "v": json.dumps(RUNNING_VERSIONS)})
        connection.execute(text("UPDATE inventory.servers SET state = 'running' WHERE id = ANY(:ids)"), {"ids": server_ids})


def mark_heard(engine, agents, start_at):
    """Each good (and later silent) agent up, its last heartbeat one interval before its first in the run, as
    the simulator schedules them (_heartbeat_schedule): the liveness of a fleet that was running before (warm)."""
    from sqlalchemy import text

    ids, times = [], []
    for i in range(SIM_PROCESSES):
        mine = simulator_share(agents, i)
        for j, (server_id, _, kind) in enumerate(mine):
            if kind in ("good", "silent"):  # the heartbeat one round before agent j's first in the run
                ids.append(server_id)
                times.append(datetime.fromtimestamp(heartbeat_due(start_at, j - len(mine), len(mine)), timezone.utc))
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO monitoring.liveness (server_id, state, last_heartbeat_at, changed_at, agent_version, versions, "
            "recent_heartbeats) SELECT s, 'up', t, t, '1.4.0', CAST(:v AS jsonb), ARRAY[t] "
            "FROM unnest(CAST(:ids AS int[]), CAST(:times AS timestamptz[])) AS b(s, t) ON CONFLICT (server_id) DO NOTHING"),
            {"ids": ids, "times": times, "v": json.dumps(RUNNING_VERSIONS)})


class Probe:
    """What the database and the broker say: rows inserted, raw tables' size, queue depths, our backends."""

    RAW = ("heartbeats", "system_samples", "dns_periods")

    def __init__(self, engine, amqp_uri, database):
        self.engine, self.amqp_uri, self.database = engine, amqp_uri, database

    def inserted(self):
        from sqlalchemy import text

        with self.engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT p.relname AS parent, sum(s.n_tup_ins) FROM pg_inherits i "
                "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
                "JOIN pg_stat_user_tables s ON s.relid = i.inhrelid "
                "WHERE n.nspname = 'monitoring' AND p.relname IN ('heartbeats', 'system_samples', 'dns_periods') "
                "GROUP BY p.relname")).all()
        found = {name: int(count or 0) for name, count in rows}
        return {name: found.get(name, 0) for name in self.RAW}

    def stored_since(self, since):
        """Rows of the three raw tables collected since ``since`` (Unix time), counted exactly."""
        from sqlalchemy import text

        moment = datetime.fromtimestamp(since, timezone.utc)
        with self.engine.connect() as connection:
            return connection.execute(text(
                "SELECT (SELECT count(*) FROM monitoring.heartbeats WHERE collected_at >= :t) "
                "+ (SELECT count(*) FROM monitoring.system_samples WHERE collected_at >= :t) "
                "+ (SELECT count(*) FROM monitoring.dns_periods WHERE collected_at >= :t)"), {"t": moment}).scalar()

    def raw_bytes(self):
        from sqlalchemy import text

        with self.engine.connect() as connection:
            return int(connection.execute(text(
                "SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i "
                "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
                "WHERE n.nspname = 'monitoring' AND p.relname IN ('heartbeats', 'system_samples', 'dns_periods')"
            )).scalar())

    def backends(self):
        from sqlalchemy import text

        with self.engine.connect() as connection:
            return connection.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"),
                                      {"d": self.database}).scalars().all()

    def queues(self):
        import pika

        from shared.schemas.agent import DEAD_LETTER_QUEUE, HEARTBEAT_QUEUE, STATS_QUEUE

        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_uri))
        try:
            channel = connection.channel()
            return {name: channel.queue_declare(name, passive=True).method.message_count
                    for name in (HEARTBEAT_QUEUE, STATS_QUEUE, DEAD_LETTER_QUEUE)}
        finally:
            connection.close()


def rss_anon_bytes(pids):
    """Private resident memory (RssAnon) of ``pids``: shared buffers and libraries are not counted again."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("RssAnon:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def lag_by_window(engine, start, windows, window):
    """Per window of collected_at: (p50, p99, rows) of stored_at - collected_at over the statistics stored."""
    from sqlalchemy import text

    query = text(
        "SELECT floor(extract(epoch FROM collected_at - :start) / :w)::int AS k, count(*), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - collected_at)), "
        "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM stored_at - collected_at)) "
        "FROM (SELECT collected_at, stored_at FROM monitoring.system_samples WHERE collected_at >= :start "
        "UNION ALL SELECT collected_at, stored_at FROM monitoring.dns_periods WHERE collected_at >= :start) AS s "
        "GROUP BY 1 ORDER BY 1")
    overall = text(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) "
        "FROM (SELECT extract(epoch FROM stored_at - collected_at) AS lag FROM monitoring.system_samples "
        "WHERE collected_at >= :start UNION ALL SELECT extract(epoch FROM stored_at - collected_at) "
        "FROM monitoring.dns_periods WHERE collected_at >= :start) AS s")
    with engine.connect() as connection:
        rows = {k: (p50, p99, n) for k, n, p50, p99 in connection.execute(query, {"start": start, "w": window})}
        total = connection.execute(overall, {"start": start}).one()
    return [rows.get(k, (float("nan"), float("nan"), 0)) for k in range(windows)], tuple(total)


def detection(engine, silenced, silence_at):
    """For the silenced servers: seconds from the last heartbeat to down, events each, false downs."""
    from sqlalchemy import text

    with engine.connect() as connection:
        downs = connection.execute(text(
            "SELECT server_id, extract(epoch FROM changed_at - last_heartbeat_at) FROM monitoring.liveness "
            "WHERE state = 'down'")).all()
        events = connection.execute(text(
            "SELECT (body->>'server_id')::int, count(*) FROM monitoring.outbox WHERE event = 'server_state_changed' "
            "AND body->>'state' = 'down' GROUP BY 1")).all()
        silence = connection.execute(text(
            "SELECT count(*) FROM monitoring.outbox WHERE event = 'fleet_silence_detected'")).scalar()
    wanted = set(silenced)
    seconds = [float(s) for sid, s in downs if sid in wanted]
    per_server = dict(events)
    return {
        "silenced": len(wanted), "down": len(seconds), "seconds": seconds,
        "exactly_one": sum(1 for sid in wanted if per_server.get(sid) == 1),
        "false_down": sorted(({sid for sid, _ in downs} | set(per_server)) - wanted),
        "fleet_silence": silence,
    }


class Statements:
    """PostgreSQL's own profile of the run (pg_stat_statements): the statements that took most of this database's
    execution time. Only where the server preloads the module (shared_preload_libraries, a restart); else says so."""

    TOP = 8

    def __init__(self, engine):
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        self.engine, self.why_not = engine, None
        try:
            with engine.begin() as connection:
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                connection.execute(text("SELECT pg_stat_statements_reset()"))
        except DBAPIError as exc:
            self.why_not = str(exc.orig).strip().splitlines()[0]

    def top(self):
        """[(share of the time, calls, total ms, mean ms, rows per call, query)] of this database, most time first."""
        from sqlalchemy import text

        if self.why_not:
            return []
        with self.engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT s.calls, s.total_exec_time, s.rows, s.query, sum(s.total_exec_time) OVER () FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
                "ORDER BY s.total_exec_time DESC")).all()
        return [(total / max(everything, 1e-9), calls, total, total / max(calls, 1), n / max(calls, 1), " ".join(query.split()))
                for calls, total, n, query, everything in rows[:self.TOP]]

    def report(self):
        if self.why_not:
            print(f"  PostgreSQL's statements: not measured ({self.why_not}; "
                  "shared_preload_libraries = 'pg_stat_statements' and a restart measure them)")
            return
        print("  PostgreSQL's statements by execution time over the run (pg_stat_statements, this database):")
        for share, calls, total, mean, rows, query in self.top():
            print(f"    {share * 100:5.1f} %  {calls:8d} calls  {total / 1000:7.1f} s  {mean:7.2f} ms each  "
                  f"{rows:8.1f} rows each  {query[:150]}")


def retention_pass(engine):
    """One pass of monitoring's retention told that the run's raw partitions have expired: its seconds, what it dropped."""
    from services.monitoring_ingest import retention

    later = datetime.now(timezone.utc) + timedelta(hours=2)
    started = time.perf_counter()
    done = retention.run(engine, later, raw_retention_minutes=60, aggregated_retention_days=400)
    return time.perf_counter() - started, done


# -- one run ----------------------------------------------------------------------------------------------
def p(samples, fraction):
    from bench.common import percentile

    return percentile(samples, fraction)


def run_fleet(count, window=WINDOW, port=None, silence_at=SILENCE_AT, silence_for=SILENCE_FOR, operators_on=True,
              cold=False):
    """The whole stack under ``count`` simulated agents; prints per window and returns the overall figures.
    ``cold``: the fleet's first contact (no server heard before the run: every first heartbeat is an up
    transition and a versions report, N of each within one interval); else a fleet that was running."""
    import pika

    from bench.common import CpuMeter, Processes, bench_environment, children_of, free_port, pids_named, wait_healthy
    from services.inventory.bootstrap import bootstrap_admin
    from services.monitoring_ingest.topology import declare_agent_topology
    from scripts.sandbox import wait_for_management_api
    from services.provisioner.rabbitmq_users import RabbitMQUsers
    from shared.config import load_settings, registered_services
    from shared.db import make_engine
    from shared.migrations import upgrade

    env = bench_environment("steward_bench_fleet")
    settings = load_settings()
    upgrade(settings.database_url)
    began = time.perf_counter()
    fleet = seed_fleet(settings.database_url, count)
    print(f"N = {count}: seeded {count} servers with an agent token each in {time.perf_counter() - began:.0f} s; "
          f"{'first contact (cold): none heard before' if cold else 'already running (warm)'}", flush=True)
    admin = bootstrap_admin(settings.database_url, "bench-admin")
    engine = make_engine(settings.database_url, pool_size=2)
    connection = pika.BlockingConnection(pika.URLParameters(settings.amqp_uri))
    declare_agent_topology(connection.channel())
    connection.close()

    agents = [(server_id, token, role(i)) for i, (server_id, token) in enumerate(fleet)]
    silenced = [a[0] for a in agents if a[2] == "silent"]
    bad = [a for a in agents if a[2] in BAD_KINDS]
    good_ids = [a[0] for a in agents if a[2] == "good"]
    if not cold:
        mark_installed(engine, good_ids + silenced)
    amqp = pika.URLParameters(settings.amqp_uri)
    vhost = amqp.virtual_host
    users = RabbitMQUsers(f"http://{amqp.host}:15672", amqp.credentials.username, amqp.credentials.password, vhost)
    wait_for_management_api(f"http://{amqp.host}:15672/api", amqp.credentials.username, amqp.credentials.password, 60)
    sample = good_ids[:: max(1, len(good_ids) // SAMPLE_BROKER_USERS)][:SAMPLE_BROKER_USERS]
    own_uris = {}
    for server_id in sample:
        user, password = users.ensure_agent_user(server_id)
        own_uris[server_id] = (f"amqp://{user}:{password}@{amqp.host}:{amqp.port}/"
                               f"{'%2F' if vhost == '/' else vhost}")

    port = port or free_port()
    probe = Probe(engine, settings.amqp_uri, settings.database_url.rsplit("/", 1)[1])
    try:  # the sample's broker users are broker-wide: they go however the run ends
        with Processes(env, tempfile.mkdtemp(prefix="steward-bench-fleet-")) as processes:
            started = {name: processes.service(name) for name in registered_services()}
            consumer = processes.start("consumer", [sys.executable, "-m", "services.monitoring_ingest.consumer"])
            gateway = processes.gateway(port)
            wait_healthy(f"http://127.0.0.1:{port}", 120)

            run_for = silence_at + silence_for
            start_at = time.time() + 2.0
            if not cold:
                start_at += 8.0  # marked heard before the first heartbeat is due
                mark_heard(engine, agents, start_at)
            times = (start_at, start_at + silence_at, start_at + run_for)
            simulators, shared = [], []
            for i in range(SIM_PROCESSES):
                counters = multiprocessing.Array("q", len(COUNTERS), lock=False)
                mine = simulator_share(agents, i)
                own = [(sid, own_uris[sid]) for sid, _, _ in mine if sid in own_uris]
                simulators.append(multiprocessing.Process(
                    target=_simulator_process, args=(port, settings.amqp_uri, mine, own, times, counters, i), daemon=True))
                shared.append(counters)
            for simulator in simulators:
                simulator.start()
            groups = {"gateway": lambda: [gateway.pid, *children_of(gateway.pid)]}
            groups.update({name: (lambda p=process: [p.pid]) for name, process in started.items()})
            groups["consumer"] = lambda: [consumer.pid]
            groups["postgres (this db)"] = probe.backends
            groups["postgres (shared)"] = lambda: sorted(set(pids_named("postgres")) - set(probe.backends()))
            groups["rabbitmq (whole)"] = lambda: pids_named("beam.smp")
            groups["simulator"] = lambda: [s.pid for s in simulators]
            groups["bench operators"] = lambda: [os.getpid()]
            meter = CpuMeter(groups)

            def totals():
                return {name: sum(c[i] for c in shared) for i, name in enumerate(COUNTERS)}

            windows = []
            operators = Operators(port, admin, good_ids + silenced)
            if not operators_on:  # to tell the fleet's own cost from the operators' (--no-operators)
                operators.threads = []
            hb_rate = sum(1 for a in agents) / HEARTBEAT_INTERVAL
            st_rate = 2 * len(agents) / STATS_INTERVAL
            with operators:
                time.sleep(max(0.0, start_at - time.time()))
                before_counts, before_rows, before_bytes = totals(), probe.inserted(), probe.raw_bytes()
                statements = Statements(engine)
                first_bytes, first_at = before_bytes, time.time()
                k = 0
                print("  window  hb offered/accepted/stored per s | stats offered/confirmed/stored per s | backlog hb+stats "
                      "| list p50/p99 ms | details p99 ms | late hb | CPU % of a core (simulator apart)", flush=True)
                while time.time() < start_at + run_for - 0.5:
                    w_start = start_at + k * window
                    meter.start()
                    time.sleep(max(0.0, min(w_start + window, start_at + run_for) - time.time()))
                    used, elapsed = meter.stop()
                    counts, rows, queues = totals(), probe.inserted(), probe.queues()
                    silent_now = time.time() > start_at + silence_at
                    offered_hb = hb_rate * (1 - (0.01 if silent_now else 0))
                    offered_st = st_rate * (1 - (0.01 if silent_now else 0))
                    lists = operators.between("list", w_start, w_start + window)
                    details = operators.between("details", w_start, w_start + window)
                    memory = {name: rss_anon_bytes(pids()) for name, pids in groups.items()}
                    entry = {
                        "k": k, "elapsed": elapsed, "cpu": {n: 100 * s / elapsed for n, s in used.items()}, "memory": memory,
                        "hb": (offered_hb, (counts["hb_accepted"] - before_counts["hb_accepted"]) / elapsed,
                               (rows["heartbeats"] - before_rows["heartbeats"]) / elapsed),
                        "st": (offered_st, (counts["st_confirmed"] - before_counts["st_confirmed"]) / elapsed,
                               (rows["system_samples"] + rows["dns_periods"] - before_rows["system_samples"]
                                - before_rows["dns_periods"]) / elapsed),
                        "backlog": queues["monitoring.heartbeats"] + queues["monitoring.stats"],
                        "list": (p(lists, 0.5), p(lists, 0.99), len(lists)), "details": (p(details, 0.5), p(details, 0.99)),
                        "late": counts["hb_late"] - before_counts["hb_late"],
                    }
                    windows.append(entry)
                    cpu = ", ".join(f"{n} {v:.0f}" for n, v in entry["cpu"].items() if v >= 0.5)
                    print(f"  {k:>4}   {entry['hb'][0]:6.0f} {entry['hb'][1]:6.0f} {entry['hb'][2]:6.0f}"
                          f"              | {entry['st'][0]:6.0f} {entry['st'][1]:6.0f} {entry['st'][2]:6.0f}"
                          f"                   | {entry['backlog']:7d} | {entry['list'][0] * 1000:6.1f} "
                          f"{entry['list'][1] * 1000:6.1f} | {entry['details'][1] * 1000:6.1f} | {entry['late']:5d} | {cpu}",
                          flush=True)
                    before_counts, before_rows = counts, rows
                    k += 1
                raw_growth = (probe.raw_bytes() - first_bytes) / (time.time() - first_at) * 3600
            for simulator in simulators:
                simulator.join(60)
            final = totals()
            # Drained: nothing ready on the queues and, for 2 s, nothing more stored or dead-lettered (the
            # consumer's prefetched, unacknowledged messages are not "ready" but not stored yet either).
            drain_until, drained, seen, steady_since = time.time() + DRAIN_SECONDS, None, None, None
            while time.time() < drain_until:
                queues = probe.queues()
                now_seen = (probe.stored_since(start_at), queues["monitoring.dead"])
                ready = queues["monitoring.heartbeats"] + queues["monitoring.stats"]
                if ready or now_seen != seen:
                    seen, steady_since = now_seen, time.time()
                elif time.time() - steady_since >= 2.0:
                    drained = steady_since - (drain_until - DRAIN_SECONDS)
                    break
                time.sleep(0.5)
            dead = probe.queues()["monitoring.dead"]
            found = detection(engine, silenced, start_at + silence_at)
            per_window_lag, (lag50, lag99) = lag_by_window(engine, datetime.fromtimestamp(start_at, timezone.utc),
                                                           len(windows), window)
            statements.report()
            retention_seconds, retention_done = retention_pass(engine)
    finally:
        for server_id in sample:
            users.delete_agent_user(server_id)

    print("  lag collected_at -> stored, per window (p50/p99 s): "
          + "  ".join(f"{k}: {a:.2f}/{b:.2f}" for k, (a, b, _) in enumerate(per_window_lag)))
    all_lists = [s for _, s in operators.samples["list"]]
    all_details = [s for _, s in operators.samples["details"]]
    steady = windows[1:] or windows
    cpu = {name: sum(w["cpu"][name] for w in steady) / len(steady) for name in groups}
    memory = {name: max(w["memory"][name] for w in windows) for name in groups}
    backlogs = [w["backlog"] for w in windows]
    growing = len(backlogs) >= 3 and backlogs[-1] > max(1000, 2 * backlogs[len(backlogs) // 2])
    late = final["hb_late"]
    seconds = found["seconds"]
    result = {
        "n": count, "hb": tuple(sum(w["hb"][i] for w in steady) / len(steady) for i in range(3)),
        "st": tuple(sum(w["st"][i] for w in steady) / len(steady) for i in range(3)),
        "lag": (lag50, lag99), "list": (p(all_lists, 0.5), p(all_lists, 0.99), len(all_lists)),
        "details": (p(all_details, 0.5), p(all_details, 0.99)), "operator_errors": operators.errors,
        "down": (p(seconds, 0.5), p(seconds, 0.99), max(seconds) if seconds else float("nan")), "found": found,
        "cpu": cpu, "memory": memory, "backlog": backlogs, "growing": growing, "drained": drained,
        "late": late, "lateness_ms_max": final["lateness_ms_max"], "counts": final, "dead": dead,
        "bad_agents": len(bad), "raw_growth": raw_growth, "retention": (retention_seconds, retention_done),
        "sample_users": len(sample),
    }
    result["holds"] = {
        "no growing backlog": not growing and drained is not None,
        "lag p99 <= 2 s": lag99 is not None and lag99 <= LAG_P99_MAX,
        "list p99 <= 50 ms": result["list"][1] <= LIST_P99_MAX,
        "down <= 95 s, each once": (found["down"] == found["silenced"] and bool(seconds) and max(seconds) <= DOWN_MAX
                                    and found["exactly_one"] == found["silenced"]),
        "no false down": not found["false_down"] and not found["fleet_silence"],
        "simulator on schedule": late <= 0.001 * final["hb_sent"],
    }
    report(result)
    return result


def report(r):
    hb, st = r["hb"], r["st"]
    c = r["counts"]
    print(f"N = {r['n']} overall (windows after the first):")
    print(f"  heartbeats/s offered {hb[0]:.0f}  accepted {hb[1]:.0f}  stored {hb[2]:.0f}; statistics/s offered {st[0]:.0f}  "
          f"confirmed {st[1]:.0f}  stored {st[2]:.0f}")
    print(f"  sent: {c['hb_sent']} heartbeats ({c['hb_accepted']} accepted, {c['hb_refused']} refused 4xx, "
          f"{c['hb_failed']} failed), {c['st_sent']} statistics ({c['st_confirmed']} confirmed, {c['st_nacked']} nacked); "
          f"{r['sample_users']} servers published as their own broker user, the rest as the shared relay user")
    print(f"  bad agents {r['bad_agents']}: heartbeats refused {c['hb_refused']}, statistics sent bad "
          f"{c['st_bad_sent']}, dead-lettered {r['dead']}")
    print(f"  backlog (messages queued) at each window's end: {r['backlog']}; drained "
          f"{'in %.1f s after the run' % r['drained'] if r['drained'] is not None else 'NOT within %d s' % DRAIN_SECONDS}")
    print(f"  lag collected_at -> stored: p50 {r['lag'][0]:.3f} s  p99 {r['lag'][1]:.3f} s")
    print(f"  list: p50 {r['list'][0] * 1000:.1f} ms  p99 {r['list'][1] * 1000:.1f} ms ({r['list'][2]} requests); "
          f"details with charts (4 requests): p50 {r['details'][0] * 1000:.1f} ms  p99 {r['details'][1] * 1000:.1f} ms; "
          f"operator errors {r['operator_errors']}")
    f = r["found"]
    print(f"  down detection: {f['down']} of {f['silenced']} silenced servers down, last heartbeat -> down p50 "
          f"{r['down'][0]:.1f} s  p99 {r['down'][1]:.1f} s  max {r['down'][2]:.1f} s; exactly one server_state_changed "
          f"for {f['exactly_one']}; false downs {len(f['false_down'])}; fleet_silence_detected {f['fleet_silence']}")
    print(f"  simulator: heartbeats more than 2 s behind schedule {r['late']}, most {r['lateness_ms_max']} ms")
    print("  CPU, % of one core (mean of the windows after the first): "
          + ", ".join(f"{n} {v:.1f}" for n, v in r["cpu"].items()))
    print("  memory, private RSS MiB (most in a window): "
          + ", ".join(f"{n} {v / 2**20:.0f}" for n, v in r["memory"].items()))
    print(f"  raw data growth: {r['raw_growth'] / 2**30:.2f} GiB per hour "
          f"({r['raw_growth'] / max(r['n'], 1) / 2**20:.3f} MiB per server per hour)")
    seconds, done = r["retention"]
    print(f"  retention pass dropping the run's raw partitions: {seconds:.2f} s "
          f"({len(done['dropped']) if done else 0} partitions)")
    for name, ok in r["holds"].items():
        print(f"  [{'met' if ok else 'MISSED'}] {name}")
    print(flush=True)


def ramp_table(results):
    print("ramp: N | hb/s offered/accepted/stored | stats/s offered/confirmed/stored | lag p50/p99 s | list p50/p99 ms "
          "| down p50/p99/max s | one event | CPU % gateway/inventory/monitoring/consumer/pg(db)/rabbitmq/simulator | holds")
    for r in results:
        cpu = r["cpu"]
        print(f"  {r['n']:>7} | {r['hb'][0]:.0f}/{r['hb'][1]:.0f}/{r['hb'][2]:.0f} | {r['st'][0]:.0f}/{r['st'][1]:.0f}/"
              f"{r['st'][2]:.0f} | {r['lag'][0]:.2f}/{r['lag'][1]:.2f} | {r['list'][0] * 1000:.0f}/{r['list'][1] * 1000:.0f}"
              f" | {r['down'][0]:.0f}/{r['down'][1]:.0f}/{r['down'][2]:.0f} | {r['found']['exactly_one']}/"
              f"{r['found']['silenced']} | {cpu['gateway']:.0f}/{cpu['inventory']:.0f}/{cpu['monitoring_ingest']:.0f}/"
              f"{cpu['consumer']:.0f}/{cpu['postgres (this db)']:.0f}/{cpu['rabbitmq (whole)']:.0f}/{cpu['simulator']:.0f}"
              f" | {'yes' if all(r['holds'].values()) else 'no: ' + ', '.join(k for k, v in r['holds'].items() if not v)}")
    print("capacity model inputs: CPU-seconds per server per hour (from the largest N that held, else the largest run)")
    held = [r for r in results if all(r["holds"].values())]
    base = max(held or results, key=lambda r: r["n"])
    for name, percent in base["cpu"].items():
        print(f"  {name}: {percent / 100 * 3600 / base['n']:.4f} CPU-s per server per hour (N = {base['n']})")
    print(f"  raw data: {base['raw_growth'] / base['n'] / 2**20:.3f} MiB per server per hour")
    print(f"largest N that held: {base['n'] if held else 'none'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--servers", type=int, default=10_000)
    parser.add_argument("--ramp", action="store_true", help=f"N = {', '.join(map(str, RAMP))} and on while it holds")
    parser.add_argument("--steps", type=lambda v: [int(x) for x in v.split(",")], default=None,
                        help="the ramp's N, comma-separated (default: %s)" % ",".join(map(str, RAMP)))
    parser.add_argument("--window", type=float, default=WINDOW, help="seconds per reported window")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--silence-at", type=float, default=SILENCE_AT,
                        help="seconds of traffic before 1 %% of the agents go silent (110 s more follow)")
    parser.add_argument("--no-operators", action="store_true", help="the fleet alone: no list, search or details")
    parser.add_argument("--cold", action="store_true",
                        help="the fleet's first contact: no server heard before the run (default: already running)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the stack's processes on the way out
    if not args.ramp:
        run_fleet(args.servers, args.window, args.port, silence_at=args.silence_at, operators_on=not args.no_operators,
                  cold=args.cold)
        return 0
    results = []
    steps = list(args.steps or RAMP)
    steps += [steps[-1] * 2, steps[-1] * 4]  # beyond the goal while it holds, bounded
    for count in steps:
        results.append(run_fleet(count, args.window, args.port, cold=args.cold))
        ramp_table(results)
        if all(results[-1]["holds"].values()):
            continue
        # The first step did not hold: down by thirds (bounded) until one does, so the ceiling is found.
        while len(results) < 4 and not any(all(r["holds"].values()) for r in results) and count > MIN_STEP:
            count = max(MIN_STEP, count // 3)
            results.append(run_fleet(count, args.window, args.port, cold=args.cold))
            ramp_table(results)
        break
    return 0


if __name__ == "__main__":
    sys.exit(main())
