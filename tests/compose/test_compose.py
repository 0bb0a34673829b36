"""`make compose-test`: docker-compose.yml run for real, two replicas of every process.

The stack comes up from nothing; the CLI on this machine talks to it through the published
port; one replica of every service is SIGKILLed in the middle of a burst of creates,
heartbeats and agent statistics; RabbitMQ restarts with messages in flight; the gateway is
restarted one replica at a time under load; a backup server (the daemon from its setup bundle,
in a container of its own) takes a backup that verifies. Every accepted request must be stored
exactly once and every event delivered once; the figures are printed at the end of the run.
"""
import io
import json
import secrets
import subprocess
import tarfile
import threading
import time

import pytest
import requests

from shared.config import registered_services
from shared.migrations import service_metadata
from tests.compose.clients import (Agent, EventCounter, Traffic, api, cli, create_server, failure_window, poll_list,
                                   stats_publisher)
from tests.compose.stack import BENCHMARK_RANGE, LOCAL_PYTHON, run
from tests.lab import lab_host
from tests.waiting import wait_for

pytestmark = pytest.mark.compose

# Every long-running role of the image, each with two replicas.
SERVICES = tuple(registered_services())
ROLES = (*SERVICES, "consumer", "gateway")


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
    started = time.monotonic()
    all_healthy()  # `up` waits for the database, the broker and the migrations, not for the gateways
    figures(f"every container healthy {time.monotonic() - started:.1f} s after `compose up` returned")
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
            try:
                name, response = create_server(stack, "burst")
            except requests.RequestException:
                refused.append((None, 0))
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

    # Two creating clients, so a create is almost always in flight on the gateway that is killed.
    workers = [threading.Thread(target=create_servers), threading.Thread(target=create_servers),
               threading.Thread(target=send_heartbeats),
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
    # Every create was answered: one in flight on the killed gateway carries an Idempotency-Key, so the proxy sent
    # it again to the other gateway, and inventory answered the repeat with the first answer (stored once, above).
    assert not refused, refused
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


def test_a_rolling_restart_of_the_gateway_fails_no_request(stack, agent_setup, all_healthy, figures):
    """An operator restarts the gateway one replica at a time (a new image, a changed setting) under load: every
    request is answered 2xx. The stopping replica drains the proxy and answers what it took (gateway/gunicorn.conf.py,
    gateway/worker.py); the proxy sends elsewhere what could not reach it (docker/haproxy/haproxy.cfg)."""
    all_healthy()
    created = []

    def create():
        name, response = create_server(stack, "roll")
        if response.status_code == 201:
            created.append(name)
        return response

    traffic = Traffic()
    for kind, send, pause in (("create", create, 0), ("create", create, 0), ("heartbeat", agent_setup.send_heartbeat, 0.02),
                              ("list", lambda: api(stack, "GET", "/servers?per_page=5"), 0.05)):
        traffic.add(kind, send, pause)
    timeline, windows = [], []
    with traffic:
        wait_for(lambda: len(traffic.answers) >= 50, timeout=60, interval=0.2, what="traffic before the restart")
        started, since = time.monotonic(), int(time.time())
        for name in sorted(stack.containers("gateway")):
            grace = stack.inspect(name)["Config"]["StopTimeout"]  # compose's stop_grace_period
            stopping = time.monotonic()
            run(["docker", "stop", "-t", str(grace), name])
            status = stack.inspect(name)["State"]["ExitCode"]
            stopped = time.monotonic()
            run(["docker", "start", name])
            wait_for(lambda: stack.health(name) == "healthy", timeout=120, interval=0.5, what=f"{name} healthy again")
            healthy = time.monotonic()
            # Docker's "healthy" is the replica's own view: the next one stops only once the proxy sends to both
            # (docs/deploy.md; under load, HAProxy's own check has passed up to seconds later than Docker's).
            run(["docker", "exec", name, "python", "-m", "scripts.container", "proxy", "--wait-up", "2"])
            windows.append((name, stopping, time.monotonic()))
            timeline.append(f"{name.split('_', 1)[1]} stopped at {stopping - started:.1f} s in "
                            f"{stopped - stopping:.1f} s (status {status}), healthy at {healthy - started:.1f} s, "
                            f"up in the proxy at {time.monotonic() - started:.1f} s")
        rolled = time.monotonic() - started
        time.sleep(2)  # and a moment on both replicas again

    failed = traffic.failed(started)
    (wait, slowest), (gap, gapped) = traffic.longest_wait(), traffic.longest_gap()
    figures(f"rolling restart of the gateway in {rolled:.1f} s ({'; '.join(timeline)}): requests "
            + ", ".join(f"{kind} {traffic.count(kind)}" for kind in traffic.kinds())
            + f"; failed {len(failed)}; longest wait for an answer {wait:.2f} s ({slowest}), "
              f"longest gap between two 2xx answers {gap:.2f} s ({gapped})")
    if failed:  # what the proxy and the gateways said about them (the proxy logs only what went wrong)
        print(run(["docker", "logs", "--since", str(since), *stack.containers("proxy")], check=False).stdout[-4000:])
        for name in stack.containers("gateway"):
            logs = run(["docker", "logs", "--since", str(since), name], check=False)
            print(name, [line for line in (logs.stdout + logs.stderr).splitlines() if "request failed" in line][-10:])
    assert not failed, failed
    assert all("(status 0)" in line for line in timeline), timeline
    # Each kind of request was sent while each replica was away or starting, so the roll was under load.
    for name, since_stop, until_healthy in windows:
        assert all(traffic.count(kind, since_stop, until_healthy) for kind in traffic.kinds()), name
    assert stack.sql("SELECT count(*) FROM inventory.servers WHERE name IN ('{}')".format("','".join(created))) \
        == str(len(created))
    all_healthy()


def test_a_backup_server_takes_a_backup_of_the_stack_that_verifies(stack, tmp_path, figures):
    """A backup server as an operator adds one: a managed server with the backup component whose setup bundle's
    daemon (agent/backup_server/, run as the bundle's start_pv_backup.sh runs it) is a container of its own on the
    stack's network; the backup service enrolls it, backs the control plane up to it through the API, and the
    verification re-hashes it on the daemon and restores it into a scratch database."""
    alias, container = f"backup-{stack.project}", f"{stack.project}-backup-server"
    code, out = cli(stack, "settings", "set", f"backup.password={secrets.token_hex(12)}")
    assert code == 0, out
    code, out = cli(stack, "--json", "servers", "create", "--name", "backup-1", "--address", alias, "--os", "ubuntu",
                    "--components", "backup")
    assert code == 0, out
    server_id = json.loads(out)["id"]
    bundle = api(stack, "GET", f"/servers/{server_id}/bundle")
    assert bundle.status_code == 200, bundle.text
    with tarfile.open(fileobj=io.BytesIO(bundle.content)) as tar:
        tar.extractall(tmp_path, filter="data")
    run(["docker", "rm", "-f", container], check=False)
    run(["docker", "run", "-d", "--name", container, "--network", sorted(stack.networks())[0], "--network-alias", alias,
         "-v", f"{tmp_path / f'setup-{server_id}'}:/opt/steward:ro", "-w", "/opt/steward", "-e", "PYTHONPATH=/opt/steward",
         LOCAL_PYTHON, "python3", "-m", "agent.backup_server", "--config", "config/backup-server.json"])
    try:
        wait_for(lambda: "listening on" in run(["docker", "logs", container]).stderr, timeout=60, interval=0.5,
                 what="the backup-server daemon listening")
        registered = api(stack, "POST", "/backup-servers", json={"server_id": server_id, "port": 8743},
                         headers={"Idempotency-Key": secrets.token_hex(8)})
        assert registered.status_code == 201, registered.text
        backup_server_id = registered.json()["id"]

        def finished(response):
            assert response.status_code == 202, response.text
            task_id = response.json()["id"]
            return wait_for(lambda: (lambda t: t["state"] in ("succeeded", "failed") and t)(
                api(stack, "GET", f"/tasks/{task_id}").json()), timeout=180, interval=1, what=f"task {task_id}")

        backed_up = finished(api(stack, "POST", "/backups", json={"backup_server_id": backup_server_id},
                                 headers={"Idempotency-Key": secrets.token_hex(8)}))
        assert backed_up["state"] == "succeeded", backed_up
        listed = api(stack, "GET", f"/backups?backup_server_id={backup_server_id}").json()
        assert [backup["task_id"] for backup in listed] == [backed_up["id"]], listed
        verified = finished(api(stack, "POST", f"/backups/{listed[0]['id']}/actions/verify",
                                headers={"Idempotency-Key": secrets.token_hex(8)}))
        assert verified["state"] == "succeeded", verified
        backup = api(stack, "GET", f"/backups/{listed[0]['id']}").json()
        shown = api(stack, "GET", f"/backup-servers/{backup_server_id}").json()
    finally:
        daemon_log = run(["docker", "logs", container], check=False).stderr
        run(["docker", "rm", "-f", container], check=False)
    figures(f"backup to a backup-server container: {backup['size_bytes']} bytes in {backup['duration_ms']} ms "
            f"(schemas {', '.join(backup['schemas'])}); verification {backup['verification']}: "
            f"{backup['verification_detail']}")
    assert backup["verification"] == "ok", (backup, daemon_log[-2000:])
    assert shown["backups"] == 1 and shown["last_verification"] == "ok", shown
