"""Test tiers share these fixtures: a real PostgreSQL database with the
migrations applied, a RabbitMQ vhost of the tests' own, real nameko
containers, and the real gateway app talking to them."""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

from shared import green  # noqa: E402

green.patch()  # noqa: E402 - plain pytest does not patch, nameko needs it

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import pytest_timeout  # noqa: E402
from amqp.exceptions import NotFound  # noqa: E402
from kombu import Connection  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from shared.config import load_settings, registered_services, service_class  # noqa: E402
from shared.crypto import AGENT_TOKEN, API_TOKEN, SecretBox, token_hash  # noqa: E402
from shared.db import make_engine  # noqa: E402
from shared.migrations import service_metadata, upgrade  # noqa: E402
from shared.rpc import RpcClient  # noqa: E402
from scripts.sandbox import drop_database, ensure_vhost, wait_for_management_api  # noqa: E402

# Seconds a test may take, setup and teardown included, by tier (tests/<tier>/): about three times its
# slowest test on a loaded 2-core machine. Anything else has pyproject's default (120 s).
TIER_TIMEOUTS = {
    "unit": 60,
    "provisioner": 600,  # push installs on lab hosts
    "updater": 600,  # installs, updates and a 6-host rollout on lab hosts
    "e2e": 600,  # make up and make down
    "compose": 900,  # the stack in containers
    "contract": 1260,  # make up (bounded at 300 s) and schemathesis (900 s) against it
}


def pytest_collection_modifyitems(items):
    tests = Path(__file__).parent
    for item in items:
        tier = Path(item.fspath).relative_to(tests).parts[0]
        if tier in TIER_TIMEOUTS and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIER_TIMEOUTS[tier]))


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    """pytest-timeout's SIGALRM method. The plugin falls back to its thread method, which ends the
    whole run, when threading's main thread is not the current one, as under eventlet's patch."""
    if settings.method != "signal":
        return None

    def handler(signum, frame):
        __tracebackhide__ = True
        pytest_timeout.timeout_sigalrm(item, settings)

    def cancel():
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True


TEST_DB = os.environ.get("STEWARD_TEST_DB", "steward_test")
TEST_SECRET_KEY = "test-secret-key"
# The test services' SecretBox: what they seal for a caller, a test opens as that caller does.
TEST_BOX = SecretBox(TEST_SECRET_KEY)
TEST_VHOST = os.environ.get("STEWARD_TEST_VHOST", "steward_test")
MANAGEMENT_API = "http://127.0.0.1:15672/api"
ROOT = Path(__file__).resolve().parents[1]
# monitoring-ingest in tests: a silent server goes down after 1 s (heartbeats are expected every 0.5 s);
# retention runs only when a test asks.
MONITORING_CONFIG = {"monitoring_ingest": {"down_after_seconds": 1, "heartbeat_interval_seconds": 0.5,
                                           "retention_interval_seconds": 0}}


@pytest.fixture(scope="session")
def settings():
    # The tests' own vhost keeps their RPC queues apart from a running `make up` stack.
    drop_database(TEST_DB, recreate=True)
    ensure_vhost(TEST_VHOST)
    environ = dict(
        os.environ,
        STEWARD_DB_NAME=TEST_DB,
        STEWARD_AMQP_VHOST=TEST_VHOST,
        STEWARD_SECRET_KEY=TEST_SECRET_KEY,
        STEWARD_AUTH_CACHE_SECONDS="0",
        STEWARD_AGENT_AUTH_CACHE_SECONDS="0",
    )
    loaded = load_settings(environ=environ)
    upgrade(loaded.database_url)
    return loaded


@pytest.fixture(scope="session")
def engine(settings):
    engine = make_engine(settings.database_url, pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def clean_database(request):
    """Each test starts from migrated, empty tables (services run in other
    greenthreads with their own connections, so a rolled-back transaction
    cannot isolate them)."""
    if "settings" not in request.fixturenames and "engine" not in request.fixturenames:
        yield
        return
    _truncate_every_schema(request.getfixturevalue("engine"))
    yield


# PostgreSQL's errors for a lock that was not free at once (NOWAIT) and for a deadlock.
LOCK_NOT_AVAILABLE, DEADLOCK = "55P03", "40P01"


def _truncate_every_schema(engine, seconds=30.0):
    """Every service's tables emptied in one transaction. A service still finishing the previous test's work (a
    notifier delivery, the ingest consumer's batch, a relay) holds some of them for a moment: the tables are
    locked all at once and NOWAIT, so the reset never waits while holding one table for another (a service
    holding that one and waiting for this one made a deadlock, cancelled by PostgreSQL, in CI); when one is
    busy the transaction ends and is tried again a little later."""
    with engine.connect() as connection:
        tables = connection.execute(
            # Leases belong to the services, which outlive a test: truncated, a running replica's
            # tasks would look abandoned until its next renewal. Partitions go with their parent.
            text("SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE n.nspname = ANY(:schemas) AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
                 "AND c.relname NOT IN ('alembic_version', 'leases') ORDER BY 1"),
            # monitoring_ingest's schema is "monitoring"
            {"schemas": [service_metadata(service).schema for service in registered_services()]},
        ).scalars().all()
    if not tables:
        return
    listed = ", ".join(tables)
    deadline, pause = time.monotonic() + seconds, 0.02
    while True:
        try:
            with engine.begin() as connection:
                connection.execute(text(f"LOCK TABLE {listed} IN ACCESS EXCLUSIVE MODE NOWAIT"))
                connection.execute(text(f"TRUNCATE {listed} RESTART IDENTITY CASCADE"))
            return
        except OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) not in (LOCK_NOT_AVAILABLE, DEADLOCK) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


def _container_factory(settings):
    containers = []

    def start(service_cls, config=None):
        container = ServiceContainer(service_cls, dict(settings, **(config or {})))
        container.start()
        containers.append(container)
        return container

    return start, containers


@pytest.fixture
def start_service(settings):
    """Start a real nameko container on the real broker; stopped after the test."""
    start, containers = _container_factory(settings)
    yield start
    for container in containers:
        container.stop()


@pytest.fixture(scope="session")
def start_shared_service(settings):
    """Like start_service, for stateless services many tests share (stopping one takes ~2 s)."""
    start, containers = _container_factory(settings)
    yield start
    for container in containers:
        container.stop()


def management_api(method, path):
    """One call to the broker's management API; its JSON answer, or None for an empty one."""
    result = subprocess.run(["curl", "-sf", "-u", "guest:guest", "-X", method, f"{MANAGEMENT_API}{path}"],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout) if result.stdout else None


@pytest.fixture(scope="session")
def rabbitmq_management():
    """``management_api``, once the plugin answers (scripts/sandbox.py). The provisioner makes per-server
    RabbitMQ users through it; tests also use it to see and close connections."""
    wait_for_management_api(MANAGEMENT_API)
    return management_api


@pytest.fixture(scope="session")
def rpc(settings):
    client = RpcClient(settings.amqp_uri, timeout=10, caller=f"tests-{uuid.uuid4().hex[:6]}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def inventory(start_shared_service):
    from services.inventory.service import InventoryService

    return start_shared_service(InventoryService)


@pytest.fixture(scope="session")
def provisioner(start_shared_service):
    from services.provisioner.service import ProvisionerService

    return start_shared_service(ProvisionerService)


@pytest.fixture(scope="module")
def backup(settings):
    """The backup service: GET /tasks merges its tasks with the provisioner's, so it must answer too.
    Module-scoped, as all_services is: a backup service a later test starts on a database of its own (a
    live restore's) must not find this one on its queue, answering from the session's database."""
    from services.backup.service import BackupService

    start, containers = _container_factory(settings)
    yield start(BackupService, {"database": {"pool_size": 2}, "backup": {"pool_size": 2}})
    for container in containers:
        container.stop()


@pytest.fixture(scope="session")
def consumer_process(settings, tmp_path_factory):
    """``python -m services.monitoring_ingest.consumer`` for the whole session: one, defined here only, since a
    fixture imported into several conftest files is a fixture of each, and a second consumer would keep
    consuming while a test stops the first."""
    from tests.monitoring.helpers import child_env

    log = tmp_path_factory.mktemp("consumer") / "consumer.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "services.monitoring_ingest.consumer", "--batch-ms", "30"],
                                   cwd=ROOT, env=child_env(settings), stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60  # a loaded machine can take long to import and connect
    with Connection(settings.amqp_uri) as connection:
        while True:  # ready once it has declared and consumes its queues
            try:
                if connection.default_channel.queue_declare("monitoring.stats", passive=True).consumer_count:
                    break
            except NotFound:  # not declared yet: the broker closed the channel, open another next time
                connection.close()
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()  # else it would consume the next run's messages in this vhost
                raise RuntimeError(f"the consumer did not start:\n{log.read_text()}")
            time.sleep(0.1)
    yield process
    process.terminate()
    process.wait(20)


@pytest.fixture(scope="session")
def monitoring(start_shared_service, inventory, consumer_process):
    """monitoring-ingest with short intervals (MONITORING_CONFIG), beside its batch consumer."""
    from services.monitoring_ingest.service import MonitoringIngestService

    return start_shared_service(MonitoringIngestService, MONITORING_CONFIG)


@pytest.fixture(scope="module")
def all_services(settings, inventory, provisioner):
    """Every service running, for what must see the whole control plane (/healthz).

    Module-scoped: the services other tests start with settings of their own
    (an updater with its own storage, a notifier they kill) must not find a
    second replica of the session competing for their messages.
    """
    start, containers = _container_factory(settings)
    started = {"inventory": inventory, "provisioner": provisioner}
    for name in registered_services():
        if name not in started:
            started[name] = start(service_class(name))
    yield started
    for container in containers:
        container.stop()


@pytest.fixture
def admin_token(settings):
    from services.inventory.bootstrap import bootstrap_admin

    return bootstrap_admin(settings.database_url, "admin")


@pytest.fixture
def admin(rpc, admin_token, inventory):
    return authenticate(rpc, admin_token)


def authenticate(rpc, token):
    """The principal of an API or agent token, asked as the gateway asks: by the token's hash."""
    return rpc.call("inventory", "authenticate", token_hash(token))


def create_token(rpc, principal, data):
    """inventory's create_token answer with its token opened, as the gateway opens it."""
    created = rpc.call("inventory", "create_token", principal, data)
    return dict(created, token=TEST_BOX.open_sealed(API_TOKEN, created["token"]))


def agent_token(rpc, server_id):
    """A fresh agent token of a server, opened as the provisioner opens it for a bundle."""
    return TEST_BOX.open_sealed(AGENT_TOKEN, rpc.call("inventory", "issue_agent_token", server_id)["token"])
