"""nameko dependencies every service uses: RPC entrypoints with deadlines, database session,
request context, catalogued events, secrets, and calls to other services (the task runner:
shared/task_runner.py)."""
import logging
import time

from nameko import rpc as nameko_rpc
from nameko.extensions import DependencyProvider, SharedExtension
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from shared import green
from shared.crypto import SecretBox
from shared.db import make_engine, once_more_if_dropped
from shared.errors import ServiceUnavailable, StewardError
from shared.events import EventEmitter
from shared.idempotency import RequestKey
from shared.logs import request_id_var
from shared.outbox import Relay, table_of
from shared.publisher import event_publisher
from shared.rpc import DEADLINE_HEADER, RpcClient, timeout_of

log = logging.getLogger("steward.rpc")


class Rpc(nameko_rpc.Rpc):
    """nameko's RPC entrypoint that drops a request whose caller stopped waiting, answers a
    database that refuses with a 503, and opens the secrets a request carries sealed.

    The caller's client sends its deadline with every request (shared/rpc.py). A request
    that arrives later (it waited in the queue while the service was down or busy) is
    acknowledged, logged and never run: its caller has answered 503 long ago, and running
    it now would act on a request nobody awaits.

    A database that cannot be reached or refuses for now (too many clients, a restart, a
    deadlock: an ``OperationalError``) answers ``ServiceUnavailable``, to try again, not an
    internal error; the log has the error itself.

    The gateway seals each secret of an API body for its place in the body (shared/crypto.py);
    they are opened here, in the service that uses them, before the schema sees the body.
    """

    _box = None

    def handle_result(self, message, worker_ctx, result, exc_info):
        if exc_info is not None and isinstance(exc_info[1], OperationalError):
            unavailable = ServiceUnavailable("the database is not available now; try again",
                                             {"database": ["not available"]})
            exc_info = (ServiceUnavailable, unavailable, exc_info[2])
        return super().handle_result(message, worker_ctx, result, exc_info)

    def handle_message(self, body, message):
        deadline = message.headers.get(DEADLINE_HEADER)
        late = time.time() - deadline if deadline is not None else 0
        if late > 0:
            token = request_id_var.set(message.headers.get("nameko.request_id"))
            try:
                log.warning("dropped %s.%s unrun: its caller's deadline passed %.1f s ago",
                            self.container.service_name, self.method_name, late, extra={"late_seconds": round(late, 3)})
            finally:
                request_id_var.reset(token)
            self.rpc_consumer.queue_consumer.ack_message(message)
            return
        raw = message.body if isinstance(message.body, bytes) else str(message.body).encode()
        if b'"sealed"' in raw:  # walking the arguments of list_servers took 21 µs, this look at the raw JSON 1.3
            body = self._opened(body)
        super().handle_message(body, message)

    def _opened(self, body):
        if self._box is None:
            self._box = SecretBox(self.container.config["SECRET_KEY"])
        return dict(body, args=[self._box.open_inputs(arg) for arg in body.get("args") or []],
                    kwargs={name: self._box.open_inputs(arg) for name, arg in (body.get("kwargs") or {}).items()})


def rpc(fn=None, **options):
    """Steward's @rpc: nameko's, with deadlines (``Rpc``) and typed errors expected (they are answers, not faults)."""
    options.setdefault("expected_exceptions", StewardError)
    decorate = Rpc.decorator(**options)
    return decorate(fn) if fn is not None else decorate


def worker_deadline(worker_ctx):
    """The deadline of the request a worker serves (Unix seconds), or None when its caller set none
    (an event handler's or a timer's worker has none: the events it reacts to have no caller waiting)."""
    if isinstance(worker_ctx.entrypoint, Rpc):
        return worker_ctx.context_data.get("deadline")
    return None


class IdempotencyKeys(DependencyProvider):
    """``idempotency = IdempotencyKeys(idempotency_keys)`` (the service's table): each worker's RequestKey,
    holding the Idempotency-Key its caller sent with the request (shared/idempotency.py). A create
    answers ``self.idempotency.answer(session, principal, request, create)``: the first answer for a
    repeat, else ``create()`` run and committed in one transaction with its key and answer."""

    def __init__(self, table):
        self.table = table

    def get_dependency(self, worker_ctx):
        key = worker_ctx.context_data.get("idempotency_key") if isinstance(worker_ctx.entrypoint, Rpc) else None
        return RequestKey(self.table, key, worker_ctx.entrypoint.method_name, self.container.config["SECRET_KEY"])


class RequestContext(DependencyProvider):
    """Puts the caller's request id into the worker's logging context."""

    def worker_setup(self, worker_ctx):
        request_id = worker_ctx.context_data.get("request_id") or worker_ctx.call_id
        request_id_var.set(request_id)
        worker_ctx.context_data.setdefault("request_id", request_id)

    def get_dependency(self, worker_ctx):
        return worker_ctx.context_data.get("request_id")


class Events(DependencyProvider):
    """A worker's EventEmitter, writing into the service's outbox in the worker's own database
    transaction (its ``DatabaseSession``): an event goes out only if the worker commits, and
    surely once it did. Emit before the commit. The container's relay (shared/outbox.py)
    publishes after each commit and polls for rows another replica or a dead process left.

    ``emitter()`` is for work outside workers (a service's green threads): each emit then
    commits on its own.
    """

    _relay = None

    def relay(self):
        # Made on first use: every dependency's setup has run by then, so the session's engine exists.
        if self._relay is None:
            database = next(d for d in self.container.dependencies if isinstance(d, DatabaseSession))
            self.database = database
            publish = event_publisher(self.container.config, self.container.service_name)
            metadata = database.base.metadata
            self._relay = Relay(database.engine, table_of(metadata, "outbox"), publish,
                                processed=table_of(metadata, "processed_events"))
        return self._relay

    def start(self):
        self.container.spawn_managed_thread(self.relay().run)

    def stop(self):
        if self._relay is not None:
            self._relay.stop()

    kill = stop

    def _write(self, worker_ctx, name, body):
        relay = self.relay()
        session = self.database.sessions[worker_ctx]
        if not session.info.get("outbox"):
            session.info["outbox"] = True
            sqlalchemy_event.listen(session, "after_commit", lambda _: relay.kick())
        relay.write(session, name, body)

    def get_dependency(self, worker_ctx):
        return EventEmitter(self.container.service_name, lambda name, body: self._write(worker_ctx, name, body))

    def emitter_for(self, session):
        """An EventEmitter for outside workers writing into ``session``'s transaction: the events commit
        with the change they report (the caller commits; the relay is told then)."""
        relay = self.relay()
        if not session.info.get("outbox"):
            session.info["outbox"] = True
            sqlalchemy_event.listen(session, "after_commit", lambda _: relay.kick())
        return EventEmitter(self.container.service_name, lambda name, body: relay.write(session, name, body))

    def emitter(self):
        """An EventEmitter for outside workers: each event commits on its own (again if the connection dropped
        under it: the first transaction died with it), then the relay is told."""
        def send(name, body):
            relay = self.relay()

            def write():
                with relay.engine.begin() as connection:
                    relay.write(connection, name, body)
            once_more_if_dropped(write)
            relay.kick()

        return EventEmitter(self.container.service_name, send)


class RpcClients(SharedExtension):
    """One shared/rpc.py client per container, named after the service, for its RpcProxy
    dependencies and for work it runs outside workers (``clients.client().service(name)``)."""

    _client = None

    def client(self):
        # Made on first use (it connects lazily too): another extension's setup may ask before this one's.
        if self._client is None:
            config = self.container.config
            self._client = RpcClient(config["AMQP_URI"], timeout=timeout_of(config), caller=self.container.service_name)
        return self._client

    def stop(self):
        if self._client is not None:
            self._client.close()

    kill = stop


class RpcProxy(DependencyProvider):
    """Calls from a worker to another service: ``inventory = RpcProxy("inventory")``, then
    ``self.inventory.get_server(principal, 7)``.

    Not nameko's RpcProxy, which waits for ever for an answer: this hands the worker the
    container's shared/rpc.py client, so a call gives up after RPC_TIMEOUT_SECONDS with
    ServiceUnavailable, a service with no replica fails at once, and typed errors come
    back typed. The worker's request id goes along with the call, and so does its
    deadline: a worker's calls give up when its own caller stops waiting.
    """

    clients = RpcClients()

    def __init__(self, target_service):
        self.target_service = target_service

    def get_dependency(self, worker_ctx):
        return self.clients.client().service(self.target_service, worker_ctx.context_data.get("request_id"),
                                             worker_deadline(worker_ctx))


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
        green.cooperate()  # libpq's sockets wait through the hub that nameko's runner patched in
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
    """The SecretBox that seals and opens secrets at rest and on the broker, keyed by SECRET_KEY."""

    def setup(self):
        self.box = SecretBox(self.container.config["SECRET_KEY"])

    def get_dependency(self, worker_ctx):
        return self.box
