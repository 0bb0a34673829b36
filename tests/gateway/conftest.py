import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from falcon import testing

from gateway.app import create_app


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
