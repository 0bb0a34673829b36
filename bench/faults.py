"""make bench-faults: an operator's worst day on a stack of its own, counted from the database and the broker.

Every service, the ingest consumer and the gateway run as real processes on their own database, vhost
and port (``steward_bench_faults`` + ``STEWARD_BENCH_SUFFIX``). Mixed traffic runs through every round:

* creates through the gateway, each with an Idempotency-Key and retried with the same key on a 5xx or a
  broken connection until it gets a 2xx/4xx answer (or 60 s pass);
* heartbeats (one a second per server of a 10-server fleet) and system statistics (two a second per
  server), published as the agents do on ``steward.agent`` with publisher confirms, republished (same
  ``seq``) after a broken connection;
* a push install on a lab host (tests/lab.py: a network namespace with its own sshd; needs root), started
  at the beginning of each round and struck by its fault mid-install (the fault waits until the task is
  past its first step); the round waits for it to end.

One fault per round, in the middle of its traffic: kill -9 of each process kind (then started again),
the broker's connections on the vhost closed (management API), the database's backends terminated
(pg_terminate_backend), the whole stack stopped with traffic queued, and a control-plane outage longer
than the down threshold (``monitoring_ingest.down_after_seconds`` set to DOWN_AFTER for the run through the
settings file, rather than waiting out the default 90 s) while the fleet keeps heartbeating to the broker.

Per round, counted once the stack has settled (deltas of the round):
requests accepted (sent) / answered (2xx) / run twice (a retried key answered 409, or more than one
``server_created`` for a name) / run late (its transaction began while no attempt was waiting for an answer:
after the gateway answered one 5xx, or after the requester had its last answer);
events committed (outbox rows) / published (marked sent) / delivered / lost / duplicated, as a
deduplicating consumer of the bench (its own durable queue on every ``<service>.events`` exchange)
counts them by id; statistics sent (confirmed) / stored / lost / duplicated; false ``down``
(``server_state_changed`` to down for a server that never stopped heartbeating) and, as a check that the count is not blind, the ``down`` of one server whose agent the first round stops (true down,
expected 1); installs started / finished once / finished twice / left running (``install_finished`` rows in
the provisioner's outbox for the round's task: a task killed with its provisioner must end once, run to
its end or failed by the lease reaper, never twice); ``fleet_silence_detected`` reports are counted too (the fleet never goes silent); recovery seconds
(from the end of the fault, the process or the stack started again, until a create sent after the fault
began is answered 2xx and /healthz is 200).
Targets: 0 lost, 0 run twice, 0 run late, 0 false alarms, every install finished exactly once.

``make bench-faults ROUNDS="whole stack"`` (``python -m bench.faults WORDS...``) runs only the rounds whose
label holds one of the words: to look at one fault again without the whole day.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pika
import yaml
from sqlalchemy import text

from bench.common import Processes, bench_environment, free_port
from tests.lab import lab_hosts

NAME = "steward_bench_faults"
FLEET = 10
DOWN_AFTER = 6.0  # seconds without a heartbeat before a server is down, for this run
HEARTBEAT_INTERVAL = 2.0  # the agents' interval as monitoring-ingest is told it (the fleet beats every second)
OUTAGE = DOWN_AFTER + 6.0  # the control plane away for longer than that
TRAFFIC_BEFORE, TRAFFIC_AFTER = 4.0, 6.0  # seconds of traffic around each fault
CREATORS = 2
RETRY_FOR = 60.0
SETTLE = 90.0  # at most this long for events and statistics to settle after a round
RPC_TIMEOUT = 10.0
EVENTS_QUEUE = "bench.faults.events"


class Stack:
    """The processes of a `make up` stack, each of which can be killed and started again."""

    def __init__(self, processes, services, port):
        self.processes, self.services, self.port = processes, services, port
        self.running = {}
        self.starts = Counter()

    def kinds(self):
        return list(self.services) + ["consumer", "gateway"]

    def start(self, kind):
        if kind == "gateway":
            self.running[kind] = self.processes.gateway(self.port)
        elif kind == "consumer":
            self.running[kind] = self.processes.start("consumer", [sys.executable, "-m", "services.monitoring_ingest.consumer"])
        else:  # a log per start, so that a restarted process's log keeps the killed one's
            self.starts[kind] += 1
            self.running[kind] = self.processes.start(f"{kind}.{self.starts[kind]}", [sys.executable, "-m", f"services.{kind}"])

    def kill(self, kind, sig=signal.SIGKILL):
        process = self.running.pop(kind)
        os.killpg(process.pid, sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            print(f"  {kind} did not stop within 30 s of signal {sig}: killed")
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)

    def start_all(self):
        for kind in self.kinds():
            self.start(kind)

    def stop_all(self, sig=signal.SIGTERM):
        for kind in list(self.running):
            self.kill(kind, sig)


class EventCounter(threading.Thread):
    """A deduplicating consumer: every event on the stack's ``<service>.events`` exchanges, counted by id."""

    def __init__(self, amqp_uri, exchanges):
        super().__init__(daemon=True)
        self.amqp_uri, self.exchanges = amqp_uri, exchanges
        self.seen = Counter()
        self.lock = threading.Lock()
        self.stopping = False
        connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
        channel = connection.channel()
        channel.queue_declare(EVENTS_QUEUE, durable=True)
        for exchange in exchanges:  # as nameko declares them, before any service publishes
            channel.exchange_declare(exchange, exchange_type="topic", durable=True)
            channel.queue_bind(EVENTS_QUEUE, exchange, routing_key="#")
        connection.close()

    def run(self):
        while not self.stopping:
            try:
                connection = pika.BlockingConnection(pika.URLParameters(self.amqp_uri))
                channel = connection.channel()
                for method, _, body in channel.consume(EVENTS_QUEUE, inactivity_timeout=0.5):
                    if self.stopping:
                        break
                    if body is None:
                        continue
                    with self.lock:
                        self.seen[json.loads(body)["id"]] += 1
                    channel.basic_ack(method.delivery_tag)
                connection.close()
            except Exception:  # the broker closed us (a fault): consume again; the queue kept the rest
                time.sleep(0.5)


class Fleet(threading.Thread):
    """Heartbeats and system statistics of FLEET servers, as their agents publish them, with confirms."""

    def __init__(self, amqp_uri, server_ids):
        super().__init__(daemon=True)
        self.amqp_uri, self.server_ids = amqp_uri, server_ids
        self.sent = set()  # (server_id, seq) of confirmed statistics
        self.lock = threading.Lock()
        self.heartbeats = 0
        self.silent = set()  # servers whose agent is stopped (the round that checks a real outage is seen)
        self.seq = 0
        self.running = threading.Event()
        self.stopping = False

    def _connect(self):
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_uri))
        channel = connection.channel()
        channel.confirm_delivery()
        return connection, channel

    def run(self):
        user = pika.URLParameters(self.amqp_uri).credentials.username
        properties = pika.BasicProperties(content_type="application/json", delivery_mode=2, user_id=user)
        connection = channel = None
        tick = 0
        while not self.stopping:
            self.running.wait()
            tick += 1
            started = time.monotonic()
            batch = []
            for server_id in self.server_ids:
                if server_id in self.silent:
                    continue
                now = datetime.now(timezone.utc).isoformat()
                batch.append((f"heartbeat.{server_id}", None, {
                    "v": 1, "kind": "heartbeat", "server_id": server_id, "seq": tick, "collected_at": now,
                    "data": {"agent_version": "1.0.0", "versions": {"dns": "3.2.6", "monitor": "1.0.0"}}}))
                for _ in range(2):
                    self.seq += 1
                    batch.append((f"stats.system.{server_id}", (server_id, self.seq), {
                        "v": 1, "kind": "system", "server_id": server_id, "seq": self.seq, "collected_at": now,
                        "data": {"load": [0.5, 0.5, 0.25], "disks": [{"mount": "/", "total_bytes": 50_000_000_000,
                                                                      "used_bytes": 1_000_000_000}],
                                 "swap": {"total_bytes": 0, "used_bytes": 0},
                                 "memory": {"total_bytes": 8_000_000_000, "available_bytes": 4_000_000_000,
                                            "used_bytes": 4_000_000_000},
                                 "connections": {"ESTABLISHED": 3}}}))
            for key, stat, body in batch:
                while not self.stopping:  # the same message again until the broker confirms it
                    try:
                        if connection is None or connection.is_closed:
                            connection, channel = self._connect()
                        channel.basic_publish("steward.agent", key, json.dumps(body), properties, mandatory=True)
                        break
                    except Exception:
                        connection = None
                        time.sleep(0.2)
                else:
                    break
                if stat:
                    with self.lock:
                        self.sent.add(stat)
                else:
                    self.heartbeats += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    def confirmed(self):
        """(statistics confirmed, the highest seq among them): every seq up to it was confirmed (sent in order)."""
        with self.lock:
            return len(self.sent), max((seq for _, seq in self.sent), default=0)


class Creator(threading.Thread):
    """Creates servers through the gateway, each with an Idempotency-Key kept across its retries."""

    def __init__(self, port, token, label):
        super().__init__(daemon=True)
        self.port, self.token, self.label = port, token, label
        self.requests = []  # {name, attempts: [unix time], status, conflict}
        self.stopping = False
        self.n = 0

    def run(self):
        while not self.stopping:
            self.n += 1
            self.requests.append(create(self.port, self.token, f"fault-{self.label}-{self.n}"))


class Installer:
    """A push install on a lab host (tests/lab.py: its own namespace and sshd) in every round, started before
    the fault so that the fault strikes it mid-install; each must end with exactly one ``install_finished``
    (run to its end, or failed by the lease reaper when its replica died), never two, none left running."""

    def __init__(self, port, token, engine, host):
        self.port, self.token, self.engine = port, token, engine
        answer = post(port, token, "/api/v2/servers", {
            "name": f"lab-install-{host.tag}", "address": host.address, "os": "ubuntu", "runtime": "process",
            "ssh_private_key": host.private_key})
        if answer["status"] != 201:
            sys.exit(f"could not register the lab host: {answer}")
        self.server_id = answer["json"]["id"]
        self.task_id = None

    def task(self):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=RPC_TIMEOUT + 5)
            connection.request("GET", f"/api/v2/tasks/{self.task_id}", headers={"Authorization": f"Bearer {self.token}"})
            response = connection.getresponse()
            answer = response.read()
            connection.close()
        except OSError:
            return None
        return json.loads(answer) if response.status == 200 else None

    def start(self):
        answer = post(self.port, self.token, f"/api/v2/servers/{self.server_id}/actions/push-install", {})
        if answer["status"] != 202:
            print(f"  the install was not accepted: {answer['status']} {answer.get('answer')!r}", flush=True)
            self.task_id = None
            return
        self.task_id = answer["json"]["id"]

    def running(self):
        """Until the install is past its first step (the fault should strike it mid-install); False if it ended."""
        def started_or_ended():
            task = self.task()
            return task is not None and (task["state"] in ("succeeded", "failed") or
                                         (task["state"] == "running" and (task.get("step_index") or 0) >= 1))
        if self.task_id is None:
            return False
        wait(started_or_ended, 60, "the install to start")
        task = self.task()
        return task is not None and task["state"] == "running"

    def ended(self):
        task = self.task()
        return task is not None and task["state"] in ("succeeded", "failed")

    def outcome(self):
        """(started, finished once, finished twice, left running, what the task says)."""
        if self.task_id is None:
            return 0, 0, 0, 0, "not started"
        with self.engine.connect() as db:
            finished = db.execute(text(
                "SELECT count(*) FROM provisioner.outbox WHERE event = 'install_finished' AND body->>'task_id' = :id"),
                {"id": self.task_id}).scalar()
        task = self.task() or {}
        left = task.get("state") not in ("succeeded", "failed")
        said = f"{task.get('state')}" + (f" ({task['error']})" if task.get("error") else "")
        return 1, int(finished == 1), int(finished > 1), int(left), said


def create(port, token, name):
    return post(port, token, "/api/v2/servers", {"name": name, "address": "198.18.200.1", "os": "ubuntu",
                                                  "runtime": "process"}, name=name)


def post(port, token, path, payload, **request):
    """POST ``payload`` with an Idempotency-Key, again with the same key on a 5xx or a broken connection until
    a 2xx/4xx answer (or RETRY_FOR seconds); the request's record: attempts, status, its answer's JSON."""
    key = uuid.uuid4().hex
    request.update({"attempts": [], "status": None, "conflict": False})
    body = json.dumps(payload)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Idempotency-Key": key}
    give_up = time.monotonic() + RETRY_FOR
    while time.monotonic() < give_up:
        attempt = [time.time(), None]  # [sent, answered or given up], Unix seconds
        request["attempts"].append(attempt)
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=RPC_TIMEOUT + 5)
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            connection.close()
        except OSError:
            attempt[1] = time.time()
            time.sleep(0.5)
            continue
        attempt[1] = time.time()
        if response.status < 500:
            request["status"] = response.status
            request["conflict"] = response.status == 409 and len(request["attempts"]) > 1
            if response.status >= 300:
                request["answer"] = answer[:200]
            else:
                request["json"] = json.loads(answer)
            return request
        time.sleep(0.5)
    return request


def ran_late(started, request, slack=0.5):
    """The create's transaction began while none of its attempts was waiting for an answer: after one was
    answered 5xx or given up, before the next was sent, or after the last."""
    return not any(sent - slack <= started <= ended + slack for sent, ended in request["attempts"])


def healthy(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except Exception:
        return False


def wait(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    print(f"  (not settled within {seconds:.0f} s: {what})", flush=True)
    return False


class Management:
    """The broker's management API, as the provisioner reaches it (shared settings)."""

    def __init__(self, amqp_uri):
        params = pika.URLParameters(amqp_uri)
        self.vhost = params.virtual_host
        self.base = f"http://{params.host}:15672/api"
        auth = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        auth.add_password(None, self.base, params.credentials.username, params.credentials.password)
        self.opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(auth))

    def close_connections(self, keep=()):
        """Close every connection on the vhost; returns how many."""
        with self.opener.open(f"{self.base}/vhosts/{urllib.request.quote(self.vhost, safe='')}/connections") as r:
            connections = json.load(r)
        for connection in connections:
            request = urllib.request.Request(
                f"{self.base}/connections/{urllib.request.quote(connection['name'], safe='')}", method="DELETE",
                headers={"X-Reason": "bench-faults"})
            try:
                self.opener.open(request).close()
            except urllib.error.HTTPError:
                pass
        return len(connections)


def counts(engine, fleet_ids, outboxes, counter, up_to_seq):
    with engine.connect() as db:
        rows = []
        for table in outboxes:
            rows += db.execute(text(f"SELECT id, event, body, sent_at IS NOT NULL AS sent FROM {table}")).all()
        stored = db.execute(text(
            "SELECT count(*), count(DISTINCT (server_id, seq)) FROM monitoring.system_samples "
            "WHERE server_id = ANY(:ids) AND seq <= :seq"), {"ids": fleet_ids, "seq": up_to_seq}).one()
        servers = dict(db.execute(text(
            "SELECT name, extract(epoch FROM created_at) FROM inventory.servers WHERE name LIKE 'fault-%'")).all())
    with counter.lock:
        seen = dict(counter.seen)
    ids = {r.id for r in rows}
    created = Counter(r.body["server"]["name"] for r in rows if r.event == "server_created")
    downs = {r.id: r.body.get("server_id") for r in rows
             if r.event == "server_state_changed" and r.body.get("state") == "down" and r.body.get("server_id") in fleet_ids}
    silences = sum(1 for r in rows if r.event == "fleet_silence_detected")
    return {
        "committed": len(rows), "published": sum(r.sent for r in rows),
        "delivered": len(ids & seen.keys()), "lost": len(ids - seen.keys()),
        "duplicated": sum(n - 1 for i, n in seen.items() if i in ids),
        "stored": stored[1], "stored_duplicated": stored[0] - stored[1],
        "servers": servers, "created_events": created, "downs": downs, "silences": silences,
    }


def settled(engine, fleet_ids, outboxes, counter, confirmed, seen):
    """Every event committed so far delivered and every confirmed statistic stored; ``seen["counts"]`` is the
    look that says so (a count taken after it would hold events committed since, not yet delivered)."""
    now = seen["counts"] = counts(engine, fleet_ids, outboxes, counter, confirmed[1])
    return now["lost"] == 0 and now["published"] == now["committed"] and now["stored"] >= confirmed[0]


def main():
    env = bench_environment(NAME)
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    # Appended as text: each process substitutes the file's ${...} in its own environment.
    from shared.config import DEFAULT_PATH, load_settings, registered_services

    config = DEFAULT_PATH.read_text() + yaml.safe_dump({"monitoring_ingest": {
        "down_after_seconds": DOWN_AFTER, "heartbeat_interval_seconds": HEARTBEAT_INTERVAL}})
    (work / "steward.yaml").write_text(config)
    env.update(STEWARD_CONFIG=str(work / "steward.yaml"), STEWARD_RPC_TIMEOUT=str(int(RPC_TIMEOUT)),
               STEWARD_STATE_DIR=str(work / "state"))
    os.environ.update(env)
    from services.inventory.bootstrap import main as bootstrap
    from shared.db import make_engine
    from shared.migrations import upgrade

    settings = load_settings()
    upgrade(settings.database_url)
    bootstrap(["--admin", "admin", "--token-file", str(work / "token"), "--password-file", str(work / "password")])
    token = (work / "token").read_text().strip()
    engine = make_engine(settings.database_url, pool_size=2)
    management = Management(settings.amqp_uri)
    port = free_port()
    services = registered_services()
    print(f"stack {env['STEWARD_DB_NAME']} on 127.0.0.1:{port}: {', '.join(services)}, consumer, gateway; "
          f"down after {DOWN_AFTER:.0f} s (monitoring_ingest.down_after_seconds), heartbeat interval "
          f"{HEARTBEAT_INTERVAL:.0f} s, RPC timeout {RPC_TIMEOUT:.0f} s",
          flush=True)

    with Processes(env, work / "logs") as processes, lab_hosts(1) as (lab,):
        counter = EventCounter(settings.amqp_uri, [f"{s}.events" for s in services])
        counter.start()
        stack = Stack(processes, services, port)
        stack.start_all()
        wait(lambda: healthy(port), 120, "/healthz") or sys.exit("the stack did not become healthy")
        fleet_names = [f"fleet-{i}" for i in range(FLEET)]
        for name in fleet_names:
            if create(port, token, name)["status"] != 201:
                sys.exit(f"could not create {name}")
        with engine.connect() as db:
            fleet_ids = db.execute(text("SELECT id FROM inventory.servers WHERE name = ANY(:n)"),
                                   {"n": fleet_names}).scalars().all()
            outboxes = [f"{s}.outbox" for s in db.execute(text(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox'")).scalars()]
        with engine.connect() as db:
            wait(lambda: db.execute(text("SELECT count(*) FROM monitoring.servers WHERE id = ANY(:ids)"),
                                    {"ids": fleet_ids}).scalar() == FLEET, 60, "monitoring knows the fleet")
        installer = Installer(port, token, engine, lab)
        fleet = Fleet(settings.amqp_uri, fleet_ids)
        fleet.start()
        fleet.running.set()
        time.sleep(DOWN_AFTER)  # every server up before the first round

        # First a real outage, that the false-alarm count is not blind: this server's down is expected.
        faults = [(f"one agent silent {OUTAGE:.0f} s", _silence(fleet, fleet_ids[0], OUTAGE))]
        faults += [(f"kill -9 {kind}", _kill(stack, kind)) for kind in stack.kinds()]
        faults += [("broker connections closed", lambda: print(f"  closed {management.close_connections()} connections")),
                   ("backends terminated", lambda: _terminate_backends(engine, env["STEWARD_DB_NAME"])),
                   ("whole stack stopped 5 s", _whole_stack(stack, 5.0)),
                   (f"control plane away {OUTAGE:.0f} s", _whole_stack(stack, OUTAGE))]
        if sys.argv[1:]:
            faults = [(label, inject) for label, inject in faults if any(word in label for word in sys.argv[1:])]
        confirmed = fleet.confirmed()
        before = counts(engine, fleet_ids, outboxes, counter, confirmed[1])
        sent_before, rows = confirmed[0], []
        for label, inject in faults:
            print(f"round: {label}", flush=True)
            installer.start()
            creators = [Creator(port, token, f"{len(rows)}-{i}") for i in range(CREATORS)]
            for creator in creators:
                creator.start()
            time.sleep(TRAFFIC_BEFORE)
            if not installer.running():
                print("  (the install had ended before the fault)", flush=True)
            faulted = time.time()
            inject()
            restarted = time.monotonic()  # the fault is over: killed process started again, stack started again
            recovered = None
            deadline = restarted + TRAFFIC_AFTER
            while time.monotonic() < deadline or recovered is None:
                if recovered is None and healthy(port) and any(
                        r["status"] == 201 and r["attempts"][-1][0] > faulted for c in list(creators) for r in c.requests):
                    recovered = time.monotonic() - restarted
                if time.monotonic() - restarted > 180:
                    break
                time.sleep(0.2)
            for creator in creators:
                creator.stopping = True
            for creator in creators:
                creator.join()
            requests = [r for c in creators for r in c.requests]
            confirmed = fleet.confirmed()
            wait(installer.ended, SETTLE, "the install to end")
            seen = {}
            wait(lambda: settled(engine, fleet_ids, outboxes, counter, confirmed, seen), SETTLE, "events and statistics")
            after = seen["counts"]
            silenced = fleet_ids[:1] if label.startswith("one agent silent") else ()
            downs = [server_id for i, server_id in after["downs"].items() if i not in before["downs"]]
            true_down = sum(1 for server_id in downs if server_id in silenced)
            sent = confirmed[0]
            late = [r for r in requests if r["name"] in after["servers"] and ran_late(after["servers"][r["name"]], r)]
            for r in late:
                print(f"  run late: {r['name']} started at {after['servers'][r['name']]:.3f}, attempts (sent, ended): "
                      + ", ".join(f"({a:.3f}, {b:.3f})" for a, b in r["attempts"]))
            twice = sum(1 for r in requests if r["conflict"] or after["created_events"][r["name"]] > 1)
            odd = [r for r in requests if r["status"] not in (201, 200)]
            for r in odd[:3]:
                print(f"  not created: {r['name']} status {r['status']} {r.get('answer', b'')!r}")
            row = {"fault": label, "accepted": len(requests), "answered": sum(r["status"] in (200, 201) for r in requests),
                   "twice": twice, "late": len(late),
                   **{k: after[k] - before[k] for k in ("committed", "published", "delivered", "lost", "duplicated",
                                                        "stored", "stored_duplicated", "silences")},
                   "false_down": len(downs) - true_down, "true_down": true_down,
                   "sent": sent - sent_before, "recovery": recovered}
            (row["installs"], row["install_once"], row["install_twice"], row["install_left"],
             install_said) = installer.outcome()
            row["lost"] = after["lost"]  # lost is what is missing now, not a difference
            row["stat_lost"] = max(0, sent - after["stored"])
            rows.append(row)
            before, sent_before = after, sent
            print("  " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "fault") + f"; the install: {install_said}",
                  flush=True)
        fleet.stopping = counter.stopping = True
    print_table(rows)
    return 0


def _kill(stack, kind):
    def inject():
        stack.kill(kind)
        stack.start(kind)
    return inject


def _whole_stack(stack, seconds):
    def inject():
        stack.stop_all()
        time.sleep(seconds)  # the fleet goes on publishing; creates fail and are retried
        stack.start_all()
    return inject


def _silence(fleet, server_id, seconds):
    def inject():
        fleet.silent.add(server_id)
        time.sleep(seconds)
        fleet.silent.discard(server_id)
    return inject


def _terminate_backends(engine, database):
    with engine.connect() as db:
        n = db.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).scalar()
    print(f"  terminated {n} backends")


def print_table(rows):
    header = ["fault", "req sent", "answered", "run twice", "run late", "ev commit", "published", "delivered",
              "lost", "dup", "stats sent", "stored", "lost", "dup", "false down", "fleet silence", "true down",
              "recovery s", "installs", "inst once", "inst twice", "inst left"]
    keys = ["accepted", "answered", "twice", "late", "committed", "published", "delivered", "lost", "duplicated",
            "sent", "stored", "stat_lost", "stored_duplicated", "false_down", "silences", "true_down", "recovery",
            "installs", "install_once", "install_twice", "install_left"]
    width = max(len(r["fault"]) for r in rows)
    print()
    print("requests: creates with an Idempotency-Key; events: every outbox, counted by id by a deduplicating consumer;"
          " statistics: system samples; installs: a push install on a lab host per round, install_finished per task")
    print(f"{header[0]:<{width}}  " + "  ".join(f"{h:>10}" for h in header[1:]))
    for r in rows:
        cells = [f"{r[k]:.1f}" if k == "recovery" and r[k] is not None else str(r[k]) for k in keys]
        print(f"{r['fault']:<{width}}  " + "  ".join(f"{c:>10}" for c in cells))
    totals = {k: sum(r[k] for r in rows) for k in ("twice", "late", "lost", "duplicated", "stat_lost",
                                                     "stored_duplicated", "false_down", "silences", "installs",
                                                     "install_once", "install_twice", "install_left")}
    print()
    print(f"  events published again (at least once) and dropped by id by the consumer: {totals['duplicated']}")
    for what, value in (("0 events lost", totals["lost"]),
                        ("0 statistics lost", totals["stat_lost"]),
                        ("0 statistics duplicated", totals["stored_duplicated"]),
                        ("0 requests run twice", totals["twice"]), ("0 requests run late", totals["late"]),
                        ("0 false down", totals["false_down"]),
                        ("0 fleet silences reported (the fleet never went silent)", totals["silences"]),
                        ("0 installs finished twice", totals["install_twice"]),
                        ("0 installs left running", totals["install_left"]),
                        ("every round's install finished exactly once", len(rows) - totals["install_once"])):
        print(f"  [{'met' if value == 0 else 'MISSED'}] {what} ({value})")


if __name__ == "__main__":
    sys.exit(main())
