import threading
import uuid
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from falcon import testing
from kombu import Connection, Exchange, Queue

from gateway.app import create_app
from shared.config import Settings
from shared.publisher import ConfirmedPublisher


@pytest.fixture(scope="session")
def app(settings, rpc):
    return create_app(settings, rpc=rpc)


@pytest.fixture
def client(app, inventory, provisioner):
    return testing.TestClient(app)


@pytest.fixture
def auth(admin_token):
    return {"Authorization": f"Bearer {admin_token}"}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def api_url(app, inventory):
    """The real app over real HTTP, for clients such as the CLI."""
    server = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def isolated_app(settings, rpc, tmp_path):
    """The app with the updater's image store in a directory of the test's own (start the updater with
    ``app_settings["updater"]``), publishing heartbeats to an exchange of the test's own (so no agent
    queue keeps them): yields (app, app_settings, a queue bound to that exchange)."""
    storage = tmp_path / "images"
    app_settings = Settings(dict(settings, updater=dict(settings.section("updater"), storage_dir=str(storage))))
    name = f"tests.agent.{uuid.uuid4().hex[:8]}"
    exchange = Exchange(name, type="topic", durable=True)  # as the gateway's publisher declares it
    with Connection(settings.amqp_uri) as connection:
        exchange(connection.default_channel).declare()
        bound = Queue(name, exchange=exchange, routing_key="heartbeat.#", exclusive=True)(connection.default_channel)
        bound.declare()
        publisher = ConfirmedPublisher(settings.amqp_uri, exchange.name)
        yield create_app(app_settings, rpc=rpc, agent_publisher=publisher), app_settings, bound
        publisher.close()
        exchange(connection.default_channel).delete()
