"""The transactional outbox (shared/outbox.py) against a process that dies right after its commit:
services started as operators start them, in a database and vhost of the module's own, and
killed by the test hook between the commit and any publish. On restart the relay publishes
what was committed, once."""
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kombu import Connection
from sqlalchemy import text

from scripts.sandbox import drop_database, ensure_vhost
from services.inventory.bootstrap import bootstrap_admin
from shared.crypto import token_hash
from shared.config import load_settings
from shared.db import make_engine
from shared.errors import ServiceUnavailable
from shared.migrations import upgrade
from shared.outbox import EXIT_AFTER_COMMIT
from shared.rpc import RpcClient
from tests.events import capture_events
from tests.monitoring.helpers import agent_publisher, message
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def isolated():
    """Settings, environment and engine of a database and vhost of this module's own: no service the
    other tests started may answer its calls or relay its outbox."""
    database = f"{os.environ.get('STEWARD_TEST_DB', 'steward_test')}_outbox"
    vhost = f"{os.environ.get('STEWARD_TEST_VHOST', 'steward_test')}_outbox"
    drop_database(database, recreate=True)
    ensure_vhost(vhost)
    environ = dict(os.environ, STEWARD_DB_NAME=database, STEWARD_AMQP_VHOST=vhost,
                   STEWARD_SECRET_KEY="test-secret-key", STEWARD_LOG_LEVEL="WARNING")
    settings = load_settings(environ=environ)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url, pool_size=1)
    yield settings, environ, engine
    engine.dispose()
    drop_database(database)


class Processes:
    def __init__(self, environ, tmp_path):
        self.environ = environ
        self.tmp_path = tmp_path
        self.started = []

    def start(self, module, *args, die_after_commit=False):
        env = dict(self.environ, **({EXIT_AFTER_COMMIT: "1"} if die_after_commit else {}))
        log = self.tmp_path / f"{module}-{len(self.started)}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=output,
                                       stderr=subprocess.STDOUT)
        process.log = log
        self.started.append(process)
        return process

    def stop_all(self):
        for process in self.started:
            if process.poll() is None:
                process.terminate()
                process.wait(30)


@pytest.fixture
def processes(isolated, tmp_path):
    started = Processes(isolated[1], tmp_path)
    yield started
    started.stop_all()


def _died_by_the_hook(process):
    status = wait_for(lambda: process.poll() is not None, timeout=60, what="the process to die after its commit")
    assert status and process.returncode == 70, process.log.read_text()[-3000:]


def _answers(client):
    try:
        return client.call("inventory", "health", timeout=2)
    except ServiceUnavailable:
        return None


def test_a_create_committed_just_before_inventory_died_is_published_once_after_restart(isolated, processes):
    settings, _, engine = isolated
    client = RpcClient(settings.amqp_uri, timeout=10, caller=f"outbox-{uuid.uuid4().hex[:6]}")
    try:
        with capture_events(settings, "inventory") as drain:
            doomed = processes.start("services.inventory", die_after_commit=True)
            wait_for(lambda: _answers(client), timeout=120, what="inventory to answer")
            admin = client.call("inventory", "authenticate", token_hash(bootstrap_admin(settings.database_url, "admin")))
            with pytest.raises(ServiceUnavailable):  # it dies before answering
                client.call("inventory", "create_server", admin, {"name": "committed", "address": "192.0.2.1",
                                                                  "os": "ubuntu"})
            _died_by_the_hook(doomed)
            with engine.connect() as connection:
                server_id = connection.execute(text("SELECT id FROM inventory.servers WHERE name = 'committed'")).scalar()
                assert server_id is not None  # the change committed ...
            assert drain() == []  # ... and nothing was published

            processes.start("services.inventory")
            received = wait_for(lambda: drain(), timeout=120, what="the relay after the restart")
            # The relay can publish before the RPC consumer is up: a call now may find nobody serving it.
            wait_for(lambda: _answers(client), timeout=120, what="inventory to answer again")
            # Another create after the first event: once its event is in, a repeat of the first would be too.
            later = client.call("inventory", "create_server", admin, {"name": "later", "address": "192.0.2.2",
                                                                      "os": "ubuntu"})
            wait_for(lambda: received.extend(drain()) or any(p["server"]["id"] == later["id"] for _, p in received),
                     what="the later create's event")
    finally:
        client.close()
    firsts = [p for name, p in received if name == "server_created" and p["server"]["id"] == server_id]
    assert len(firsts) == 1, received
    assert len(firsts[0]["id"]) == 32 and firsts[0]["sequence"] >= 1


def _consuming(settings):
    with Connection(settings.amqp_uri) as connection:
        try:
            return connection.default_channel.queue_declare("monitoring.heartbeats", passive=True).consumer_count
        except Exception:  # not declared yet
            return 0


def test_an_ingest_state_change_committed_before_the_consumer_died_is_published_once(isolated, processes):
    """The batch's commit made server 7 up; the consumer died before acknowledging the heartbeat or publishing.
    The restarted consumer gets the heartbeat again (an idempotent write: no new transition) and the relay
    publishes the committed server_state_changed, once."""
    settings, _, engine = isolated
    with capture_events(settings, "monitoring_ingest") as drain, agent_publisher(settings.amqp_uri) as publish:
        doomed = processes.start("services.monitoring_ingest.consumer", "--batch-ms", "30", die_after_commit=True)
        wait_for(lambda: _consuming(settings), timeout=60, what="the consumer to consume")
        publish(message("heartbeat", 7, 1))
        _died_by_the_hook(doomed)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT state FROM monitoring.liveness WHERE server_id = 7")).scalar() == "up"
        assert drain() == []

        processes.start("services.monitoring_ingest.consumer", "--batch-ms", "30")
        wait_for(lambda: _consuming(settings), timeout=60, what="the consumer to consume again")
        # Server 8's heartbeat comes after the redelivered one: once its transition is out, 7's repeat was written.
        publish(message("heartbeat", 8, 1))
        received = []
        wait_for(lambda: received.extend(drain()) or
                 any(p.get("server_id") == 8 for name, p in received if name == "server_state_changed"),
                 what="server 8 up")
    changes = [(p["server_id"], p["previous_state"], p["state"]) for name, p in received
               if name == "server_state_changed"]
    assert sorted(changes) == [(7, "unknown", "up"), (8, "unknown", "up")], received
