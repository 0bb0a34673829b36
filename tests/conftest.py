"""Test tiers share these fixtures: a real PostgreSQL database with the
migrations applied, a RabbitMQ vhost of the tests' own, real nameko
containers, and the real gateway app talking to them."""
import warnings

warnings.filterwarnings("ignore", message=r"(?s).*Eventlet is deprecated")

from shared import green  # noqa: E402

green.patch()  # noqa: E402 - plain pytest does not patch, nameko needs it

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402
from nameko.containers import ServiceContainer  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from shared.config import SERVICES, load_settings  # noqa: E402
from shared.db import make_engine  # noqa: E402
from shared.migrations import upgrade  # noqa: E402
from shared.rpc import RpcClient  # noqa: E402
from scripts.sandbox import drop_database, ensure_vhost  # noqa: E402

TEST_DB = os.environ.get("STEWARD_TEST_DB", "steward_test")
TEST_VHOST = os.environ.get("STEWARD_TEST_VHOST", "steward_test")
MANAGEMENT_API = "http://127.0.0.1:15672/api"


@pytest.fixture(scope="session")
def settings():
    # The tests' own vhost keeps their RPC queues apart from a running `make up` stack.
    drop_database(TEST_DB, recreate=True)
    ensure_vhost(TEST_VHOST)
    environ = dict(
        os.environ,
        STEWARD_DB_NAME=TEST_DB,
        STEWARD_AMQP_VHOST=TEST_VHOST,
        STEWARD_SECRET_KEY="test-secret-key",
        STEWARD_AUTH_CACHE_SECONDS="0",
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
    engine = request.getfixturevalue("engine")
    for attempt in range(5):
        try:
            _truncate_every_schema(engine)
            break
        except OperationalError as exc:
            # A service still finishing the previous test's work (a notifier delivery, say) can
            # hold one table while TRUNCATE holds another; PostgreSQL then cancels one of the two.
            if getattr(exc.orig, "pgcode", None) != "40P01" or attempt == 4:
                raise
    yield


def _truncate_every_schema(engine):
    with engine.begin() as connection:
        for schema in SERVICES:
            tables = connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s AND tablename <> 'alembic_version'"),
                {"s": schema},
            ).scalars().all()
            if tables:
                connection.execute(text(f"TRUNCATE {', '.join(f'{schema}.{t}' for t in tables)} RESTART IDENTITY CASCADE"))


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
    """``management_api``, once the plugin answers. The provisioner makes per-server RabbitMQ users
    through it; tests also use it to see and close connections (enabling is idempotent)."""
    subprocess.run(["rabbitmq-plugins", "enable", "--quiet", "rabbitmq_management"], check=True, capture_output=True)
    for _ in range(100):
        try:
            management_api("GET", "/overview")
            return management_api
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    raise RuntimeError("RabbitMQ management API did not come up")


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


def service_class(name):
    """The nameko service class of services/<name>/service.py."""
    import importlib

    module = importlib.import_module(f"services.{name}.service")
    return next(v for v in vars(module).values() if isinstance(v, type) and getattr(v, "name", None) == name
                and v.__module__ == module.__name__)


@pytest.fixture(scope="module")
def all_services(settings, inventory, provisioner):
    """Every service running, for what must see the whole control plane (/healthz).

    Module-scoped: the services other tests start with settings of their own
    (an updater with its own storage, a notifier they kill) must not find a
    second replica of the session competing for their messages.
    """
    start, containers = _container_factory(settings)
    started = {"inventory": inventory, "provisioner": provisioner}
    for name in SERVICES:
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
    return rpc.call("inventory", "authenticate", admin_token)
