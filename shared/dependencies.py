"""nameko dependencies every service uses: database session, request context, catalogued events."""
from nameko import rpc as nameko_rpc
from nameko.events import EventDispatcher
from nameko.extensions import DependencyProvider

from sqlalchemy.orm import sessionmaker

from shared.crypto import SecretBox
from shared.db import make_engine
from shared.errors import StewardError
from shared.events import build_event
from shared.logs import request_id_var


def rpc(fn=None, **options):
    """nameko's @rpc, with Steward's typed errors expected: they are answers, not faults."""
    options.setdefault("expected_exceptions", StewardError)
    decorate = nameko_rpc.rpc(**options)
    return decorate(fn) if fn is not None else decorate


class RequestContext(DependencyProvider):
    """Puts the caller's request id into the worker's logging context."""

    def worker_setup(self, worker_ctx):
        request_id = worker_ctx.context_data.get("request_id") or worker_ctx.call_id
        request_id_var.set(request_id)
        worker_ctx.context_data.setdefault("request_id", request_id)

    def get_dependency(self, worker_ctx):
        return worker_ctx.context_data.get("request_id")


class EventEmitter:
    def __init__(self, dispatch):
        self._dispatch = dispatch

    def emit(self, name, **payload):
        self._dispatch(name, build_event(name, **payload))


class Events(EventDispatcher):
    """An EventDispatcher that only sends payloads the event catalog accepts."""

    def get_dependency(self, worker_ctx):
        return EventEmitter(super().get_dependency(worker_ctx))


class DatabaseSession(DependencyProvider):
    """A SQLAlchemy session per worker, from one engine per container.

    The session is closed after the worker, which rolls back whatever the
    worker did not commit.
    """

    def __init__(self, base):
        self.base = base
        self.engine = None
        self.sessions = {}

    def setup(self):
        settings = self.container.config
        pool_size = int((settings.get("database") or {}).get("pool_size", 10))
        self.engine = make_engine(settings["DATABASE_URL"], pool_size=pool_size)
        self.Session = sessionmaker(bind=self.engine, expire_on_commit=False)

    def stop(self):
        self.engine.dispose()

    def kill(self):
        self.engine.dispose()

    def get_dependency(self, worker_ctx):
        session = self.Session()
        self.sessions[worker_ctx] = session
        return session

    def worker_teardown(self, worker_ctx):
        session = self.sessions.pop(worker_ctx, None)
        if session is not None:
            session.close()


class Secrets(DependencyProvider):
    """The SecretBox that seals and opens secrets at rest, keyed by SECRET_KEY."""

    def setup(self):
        self.box = SecretBox(self.container.config["SECRET_KEY"])

    def get_dependency(self, worker_ctx):
        return self.box
