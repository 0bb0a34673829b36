"""`make compose-test`: docker-compose.yml run for real, two replicas of every process.

The stack comes up from nothing; the CLI on this machine talks to it through the published
port; one replica of every service is SIGKILLed in the middle of a burst of creates,
heartbeats and agent statistics; RabbitMQ restarts with messages in flight; the gateway is
restarted one replica at a time. Every accepted request must be stored exactly once and every
event delivered once; the figures are printed at the end of the run.
"""
import io
import json
import subprocess
import tarfile
import threading
import time
import uuid

import pika
import pytest
import requests

from cli.main import main as steward
from shared.config import registered_services
from shared.migrations import service_metadata
from tests.compose.stack import BENCHMARK_RANGE, run
from tests.lab import lab_host
from tests.monitoring.helpers import message
from tests.waiting import wait_for

pytestmark = pytest.mark.compose

# Every long-running role of the image, each with two replicas.
SERVICES = tuple(registered_services())
ROLES = (*SERVICES, "consumer", "gateway")


def cli(stack, *argv):
    """The steward CLI on this machine against the stack's published port: (exit code, stdout)."""
    out = io.StringIO()
    from contextlib import redirect_stdout
    with redirect_stdout(out):
        code = steward(["--url", stack.url, "--token", stack.admin_token, *argv])
    return code, out.getvalue()


def api(stack, method, path, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token or stack.admin_token}"}
    return requests.request(method, f"{stack.url}/api/v2{path}", headers=headers, timeout=15, **kwargs)


class Agent:
    """A managed server's agent as the setup bundle configures it: its token and its RabbitMQ user."""

    def __init__(self, stack, server_id):
        response = api(stack, "GET", f"/servers/{server_id}/bundle")
        assert response.status_code == 200, response.text
        with tarfile.open(fileobj=io.BytesIO(response.content)) as tar:
            config = json.load(tar.extractfile(f"setup-{server_id}/config/agent.json"))
        self.stack, self.server_id = stack, server_id
        self.token, self.rabbitmq = config["agent_token"], config["rabbitmq"]
        self.seq = 0

    def heartbeat(self):
        self.seq += 1
        body = message("heartbeat", self.server_id, self.seq)
        status = requests.post(f"{self.stack.url}/api/v2/monitoring/heartbeat", json=body, timeout=15,
                               headers={"Authorization": f"Bearer {self.token}"}).status_code
        return self.seq, status

    def connect(self):
        # The bundle names the broker as agents reach it (the admin setting rabbitmq.host/port).
        parameters = pika.ConnectionParameters(
            self.rabbitmq["host"], self.rabbitmq["port"], "/",
            pika.PlainCredentials(self.rabbitmq["user"], self.rabbitmq["password"]),
            connection_attempts=1, socket_timeout=5, blocked_connection_timeout=10)
        connection = pika.BlockingConnection(parameters)
        channel = connection.channel()
        channel.confirm_delivery()
        return connection, channel


def stats_publisher(agent, stopping, confirmed):
    """Publishes system statistics with confirms until told to stop, reconnecting when the broker is away."""
    seq, connection = 0, None
    while not stopping.is_set():
        try:
            if connection is None or connection.is_closed:
                connection, channel = agent.connect()
            seq += 1
            body = json.dumps(message("system", agent.server_id, seq)).encode()
            channel.basic_publish("steward.agent", f"stats.system.{agent.server_id}", body,
                                  # As the agent does: RabbitMQ checks user_id against the connection's user.
                                  pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                                       user_id=agent.rabbitmq["user"]),
                                  mandatory=True)
            confirmed.append(seq)
        except (pika.exceptions.AMQPError, OSError):
            connection = None
            time.sleep(0.2)
    if connection is not None and connection.is_open:
        connection.close()


class EventCounter:
    """A queue of the test's own on a service's events, counted as a deduplicating consumer sees them: per fact
    (``identify``), how many distinct events (by the event's id) arrived. The outbox delivers at least once, so a
    relay killed between publish and marking the row sent publishes that event again, with the same id, which
    consumers drop; ``republished`` counts those, and a second *distinct* event for one fact is a real duplicate.
    """

    def __init__(self, stack, exchange, routing_key, identify):
        self.connection = pika.BlockingConnection(pika.URLParameters(stack.amqp_uri))
        self.channel = self.connection.channel()
        self.queue = f"compose-test-events-{uuid.uuid4().hex[:6]}"
        self.identify = identify
        self.channel.exchange_declare(exchange, "topic", durable=True)
        self.channel.queue_declare(self.queue, durable=True)
        self.channel.queue_bind(self.queue, exchange, routing_key)
        self.seen = {}
        self.event_ids = {}
        self.republished = 0

    def drain(self):
        while True:
            method, _, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.seen
            payload = json.loads(body)
            key, ids = self.identify(payload), self.event_ids.setdefault(self.identify(payload), set())
            if payload["id"] in ids:
                self.republished += 1
                continue
            ids.add(payload["id"])
            self.seen[key] = len(ids)

    def close(self):
        self.channel.queue_delete(self.queue)
        self.connection.close()


def poll_list(stack, stopping, samples):
    while not stopping.is_set():
        started = time.monotonic()
        try:
            status = api(stack, "GET", "/servers?per_page=5").status_code
        except requests.RequestException:
            status = 0
        samples.append((started, status))
        time.sleep(0.05)


def failure_window(samples, since):
    """(failed answers, seconds from the first to the last failed answer) of the list after ``since``."""
    failed = [at for at, status in samples if at >= since and status != 200]
    return len(failed), (failed[-1] - failed[0]) if failed else 0.0


@pytest.fixture(scope="module")
def agent_setup(stack):
    """An admin points agents at the published broker port; one server gets a bundle (its agent)."""
    code, out = cli(stack, "settings", "set", "rabbitmq.host=127.0.0.1", f"rabbitmq.port={stack.amqp_port}")
    assert code == 0, out
    code, out = cli(stack, "--json", "servers", "create", "--name", "agent-host", "--address", "198.18.0.10",
                    "--os", "ubuntu")
    assert code == 0, out
    return Agent(stack, json.loads(out)["id"])


def test_the_stack_comes_up_healthy_from_nothing_with_two_replicas(stack, all_healthy, figures):
    all_healthy()
    containers = stack.containers()
    for role in ROLES:
        replicas = [name for name in containers if f"_{role}_" in name]
        assert len(replicas) == 2, (role, replicas)
    health = wait_for(lambda: (lambda h: h["status"] == "ok" and h)(requests.get(f"{stack.url}/healthz", timeout=10).json()),
                      timeout=60, interval=1, what="/healthz ok")
    assert set(health["services"]) == set(SERVICES)
    # Every address the stack uses stays in the benchmark range.
    assert all(subnet.startswith(BENCHMARK_RANGE) for subnet in stack.networks().values()), stack.networks()
    assert all(address.startswith(BENCHMARK_RANGE) for address in stack.addresses().values()), stack.addresses()
    # The migrations ran once, in the one-shot container, and exited 0.
    (migrate,) = [name for name in containers if "_migrate_" in name]
    assert stack.inspect(migrate)["State"]["ExitCode"] == 0
    assert stack.sql("SELECT count(*) FROM inventory.alembic_version") == "1"


def test_the_cli_creates_servers_and_agents_send_heartbeats_through_the_published_port(stack, agent_setup):
    code, out = cli(stack, "servers", "create", "--name", "cli-made", "--address", "198.18.0.11", "--os", "ubuntu")
    assert code == 0 and "created server cli-made" in out
    code, out = cli(stack, "--json", "servers", "list", "--search", "cli-made")
    assert code == 0 and json.loads(out)["total"] == 1

    seq, status = agent_setup.heartbeat()
    assert status == 202
    wait_for(lambda: stack.sql(f"SELECT count(*) FROM monitoring.heartbeats WHERE server_id = {agent_setup.server_id} "
                               f"AND seq = {seq}") == "1", timeout=30, interval=0.5, what="the heartbeat stored")
    code, out = cli(stack, "--json", "servers", "show", "agent-host")
    assert code == 0 and json.loads(out)["state"] == "running"


def test_killing_one_replica_of_everything_loses_and_duplicates_nothing(stack, agent_setup, all_healthy, figures):
    all_healthy()
    events = EventCounter(stack, "inventory.events", "server_created", lambda payload: payload["server"]["id"])
    stopping = threading.Event()
    created, refused, heartbeats, confirmed, samples = [], [], [], [], []

    def create_servers():
        while not stopping.is_set():
            name = f"burst-{uuid.uuid4().hex[:10]}"
            try:
                response = api(stack, "POST", "/servers", json={"name": name, "address": "198.18.1.1", "os": "ubuntu"})
            except requests.RequestException:
                refused.append((name, 0))
                continue
            (created if response.status_code == 201 else refused).append(
                (response.json()["id"], name) if response.status_code == 201 else (name, response.status_code))

    def send_heartbeats():
        while not stopping.is_set():
            try:
                seq, status = agent_setup.heartbeat()
            except requests.RequestException:
                continue
            if status == 202:
                heartbeats.append(seq)
            time.sleep(0.02)

    workers = [threading.Thread(target=create_servers), threading.Thread(target=send_heartbeats),
               threading.Thread(target=stats_publisher, args=(agent_setup, stopping, confirmed)),
               threading.Thread(target=poll_list, args=(stack, stopping, samples))]
    for worker in workers:
        worker.start()
    killed = []
    try:
        wait_for(lambda: len(created) >= 10 and len(confirmed) >= 50, timeout=60, interval=0.2, what="the burst")
        killed_at = time.monotonic()
        for role in ROLES:
            name = sorted(name for name in stack.containers(role))[0]
            run(["docker", "kill", name])
            killed.append(name)
        time.sleep(15)  # the burst goes on against one replica of everything
    finally:
        stopping.set()
        for worker in workers:
            worker.join(60)
    for name in killed:
        run(["docker", "start", name])

    server_ids = [server_id for server_id, _ in created]
    stored = stack.sql(f"SELECT count(*) FROM inventory.servers WHERE id IN ({','.join(map(str, server_ids))})")
    names = "','".join(name for _, name in created)
    assert stored == str(len(created)) and stack.sql(
        f"SELECT count(*) FROM inventory.servers WHERE name IN ('{names}')") == str(len(created))

    def heartbeats_stored():
        return stack.sql(f"SELECT count(DISTINCT seq) FROM monitoring.heartbeats WHERE server_id = {agent_setup.server_id} "
                         f"AND seq IN ({','.join(map(str, heartbeats))})") == str(len(heartbeats))

    def stats_stored():
        return stack.sql(f"SELECT count(*) FROM monitoring.system_samples WHERE server_id = {agent_setup.server_id}")

    wait_for(heartbeats_stored, timeout=90, interval=1, what="every accepted heartbeat stored")
    wait_for(lambda: int(stats_stored()) >= len(confirmed), timeout=90, interval=1, what="every confirmed message stored")
    stats_rows, stats_distinct = stack.sql(
        f"SELECT count(*) || ' ' || count(DISTINCT seq) FROM monitoring.system_samples "
        f"WHERE server_id = {agent_setup.server_id}").split()
    confirmed_stored = stack.sql(
        f"SELECT count(DISTINCT seq) FROM monitoring.system_samples WHERE server_id = {agent_setup.server_id} "
        f"AND seq IN ({','.join(map(str, confirmed))})")
    assert confirmed_stored == str(len(confirmed)) and stats_rows == stats_distinct

    seen = wait_for(lambda: (lambda s: set(server_ids) <= set(s) and s)(dict(events.drain())), timeout=60, interval=1,
                    what="server_created for every accepted create")
    events.close()
    duplicated = {server_id: count for server_id, count in seen.items() if count > 1}
    assert not duplicated

    failures, window = failure_window(samples, killed_at)
    figures(f"replica kill ({', '.join(killed)}): creates accepted {len(created)}, not accepted {len(refused)} "
            f"({sorted(set(status for _, status in refused))}), stored {stored}; heartbeats accepted {len(heartbeats)}, "
            f"stored once each; agent statistics confirmed {len(confirmed)}, stored {stats_rows} rows "
            f"({stats_distinct} distinct, {int(stats_rows) - int(stats_distinct)} duplicated); "
            f"server_created published for {len(server_ids)} accepted creates, delivered {sum(seen.values())} "
            f"for {len(seen)} servers, {len(duplicated)} duplicated ({events.republished} republished by the outbox "
            f"with the same id, dropped by id); list: {len(samples)} requests, "
            f"{failures} failed after the kill over a window of {window:.2f} s")
    # The list answered again once the surviving replicas took over, and kept answering.
    assert [status for _, status in samples[-20:]] == [200] * 20
    all_healthy()


def test_restarting_rabbitmq_with_messages_in_flight_loses_nothing(stack, agent_setup, all_healthy, figures):
    all_healthy()
    stopping, confirmed, heartbeats = threading.Event(), [], []
    publisher = threading.Thread(target=stats_publisher, args=(agent_setup, stopping, confirmed))
    first = int(stack.sql(f"SELECT coalesce(max(seq), 0) FROM monitoring.system_samples WHERE server_id = {agent_setup.server_id}"))
    # Statistics wait on the queue while the consumers are stopped: in flight when the broker restarts.
    stack.compose("stop", "consumer")
    publisher.start()
    try:
        wait_for(lambda: len(confirmed) >= 200, timeout=60, interval=0.2, what="messages queued")
        for _ in range(20):
            seq, status = agent_setup.heartbeat()
            if status == 202:
                heartbeats.append(seq)
        started = time.monotonic()
        stack.compose("restart", "rabbitmq")
        restarted = time.monotonic() - started
        wait_for(lambda: len(confirmed) >= 400, timeout=90, interval=0.5, what="publishing again after the restart")
    finally:
        stopping.set()
        publisher.join(60)
    stack.compose("start", "consumer")
    queued = len(confirmed)
    wait_for(lambda: stack.sql(
        f"SELECT count(DISTINCT seq) FROM monitoring.system_samples WHERE server_id = {agent_setup.server_id} "
        f"AND seq IN ({','.join(map(str, confirmed))})") == str(queued), timeout=120, interval=1,
        what="every confirmed message stored after the broker restart")
    wait_for(lambda: stack.sql(
        f"SELECT count(DISTINCT seq) FROM monitoring.heartbeats WHERE server_id = {agent_setup.server_id} "
        f"AND seq IN ({','.join(map(str, heartbeats))})") == str(len(heartbeats)), timeout=60, interval=1,
        what="every accepted heartbeat stored")
    # The services find the broker again: the API answers.
    wait_for(lambda: api(stack, "GET", "/servers?per_page=1").status_code == 200, timeout=90, interval=1,
             what="the API after the broker restart")
    figures(f"RabbitMQ restart ({restarted:.1f} s): agent statistics confirmed {queued} (first seq above {first}), "
            f"all stored; heartbeats accepted {len(heartbeats)}, all stored")
    all_healthy()


def test_a_missing_secret_or_an_unreachable_database_stops_a_container_with_one_line(stack):
    image = stack.env["STEWARD_IMAGE"]
    network = sorted(stack.networks())[0]
    missing = run(["docker", "run", "--rm", "--network", network, image, "inventory"], check=False)
    unreachable = run(["docker", "run", "--rm", "--network", network, "-e", "STEWARD_SECRET_KEY=x",
                       "-e", "STEWARD_DB_HOST=nowhere.invalid", image, "gateway"], check=False)
    for done, says in ((missing, "lacks SECRET_KEY"), (unreachable, "PostgreSQL at nowhere.invalid:5432")):
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and says in json.loads(lines[0])["message"], done.stderr


def test_two_migrations_at_once_take_turns_and_migrate_once(stack):
    stack.sql("CREATE DATABASE steward_twice")
    argv = ["docker", "run", "--rm", "--network", sorted(stack.networks())[0], "-e", "STEWARD_SECRET_KEY=x",
            "-e", "STEWARD_DB_HOST=postgres", "-e", "STEWARD_DB_NAME=steward_twice", "-e", "STEWARD_DB_USER=steward",
            "-e", f"STEWARD_DB_PASSWORD={stack.db_password}", stack.env["STEWARD_IMAGE"], "migrate"]
    both = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(process.wait(300), process.stderr.read()) for process in both]
    assert [status for status, _ in results] == [0, 0], results
    (postgres,) = stack.containers("postgres")
    for service in SERVICES:
        schema = service_metadata(service).schema
        versions = run(["docker", "exec", postgres, "psql", "-U", "steward", "-d", "steward_twice", "-Atc",
                        f"SELECT count(*) FROM {schema}.alembic_version"]).stdout.strip()
        assert versions == "1", service


def test_every_process_stops_on_sigterm_with_status_0_within_its_grace_period(stack, all_healthy, figures):
    all_healthy()
    grace = 30
    timings = {}
    for role in ROLES:
        name = sorted(stack.containers(role))[-1]
        started = time.monotonic()
        run(["docker", "stop", "-t", str(grace), name])
        timings[role] = (time.monotonic() - started, stack.inspect(name)["State"]["ExitCode"])
        run(["docker", "start", name])
    figures("SIGTERM to exit: " + ", ".join(f"{role} {seconds:.1f} s (status {code})"
                                            for role, (seconds, code) in timings.items()))
    assert {role: code for role, (_, code) in timings.items()} == {role: 0 for role in ROLES}
    all_healthy()


def test_an_install_in_progress_is_marked_failed_when_its_provisioner_replica_stops(stack, all_healthy, figures):
    all_healthy()
    finished = EventCounter(stack, "provisioner.events", "install_finished", lambda payload: payload["task_id"])
    with lab_host() as host:
        created = api(stack, "POST", "/servers", json={
            "name": f"lab-{host.tag}", "address": host.address, "os": "ubuntu", "runtime": "process",
            "ssh_password": host.root_password})
        assert created.status_code == 201, created.text
        accepted = api(stack, "POST", f"/servers/{created.json()['id']}/actions/push-install")
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["id"]
        # Past the upload: the replica is working on the lab host when it gets SIGTERM.
        claimed_by = wait_for(lambda: stack.sql(
            f"SELECT claimed_by FROM provisioner.tasks WHERE id = '{task_id}' AND state = 'running' AND step_index >= 4"),
            timeout=120, interval=0.2, what="the install running on a replica")
        hostname = claimed_by.rsplit("-", 1)[0]
        (name,) = [n for n in stack.containers("provisioner") if stack.inspect(n)["Config"]["Hostname"] == hostname]
        step = stack.sql(f"SELECT current_step FROM provisioner.tasks WHERE id = '{task_id}'")
        started = time.monotonic()
        run(["docker", "stop", "-t", "30", name])
        stopped_in = time.monotonic() - started
        status = stack.inspect(name)["State"]["ExitCode"]
        run(["docker", "start", name])
        task = api(stack, "GET", f"/tasks/{task_id}").json()
        seen = wait_for(lambda: finished.drain().get(task_id), timeout=30, interval=0.5, what="install_finished")
    finished.close()
    figures(f"provisioner SIGTERM during an install (step {step}): exit {status} after {stopped_in:.1f} s; "
            f"task {task['state']}: {task['error']}; install_finished delivered {seen}x")
    assert status == 0 and stopped_in < 30
    assert task["state"] == "failed" and "stopped" in task["error"] and seen == 1
    all_healthy()
