"""The one RPC client: a pooled, thread-safe client that speaks nameko's AMQP protocol.

Every call Steward makes to a service goes through it: the gateway's (plain
threads under gunicorn gthread, where a standalone nameko proxy per request
costs tens of milliseconds), a service's calls to another service (the
``RpcProxy`` dependency in shared/dependencies.py hands workers this client)
and background work outside workers (the provisioner's installs).

One client per process (per nameko container) keeps two long-lived
connections: one publishes requests (with publisher confirms), the other
consumes the replies of every thread from one reply queue of its own and
hands each to its caller by correlation id. The queue outlives a dropped
connection, so a reply sent while the consumer reconnects is delivered, not
lost. A service's typed errors come back as the same typed errors.

Every request carries its deadline (``nameko.deadline``, Unix seconds): the
caller's timeout (``RPC_TIMEOUT_SECONDS`` of the configuration), or less when
the caller's own request must be answered sooner. No call waits past it, and
the service drops a request that reaches it later (shared/dependencies.py's
``rpc``). Before publishing, the client asks the broker whether anything
consumes the service's queue, so a call to a service with no running replica
fails at once with 503 instead of waiting out its deadline (docs/decisions.md
has the measured reason). With ``calls_per_service``, at most that many calls
of this process wait on one service at a time (a slow or hung service cannot
hold every gateway thread). One more waits its turn while the service
answers; when none of the calls holding its slots has ended for
``SLOT_STALL_SECONDS``, it fails with 503 instead.
"""
import contextvars
import logging
import os
import threading
import time
import uuid

from amqp.exceptions import NotFound as QueueNotFound
from kombu import Connection, Consumer, Exchange, Producer, Queue

from shared.errors import ServiceNotRunning, ServiceUnavailable, StewardError, from_remote
from shared.logs import request_id_var
from shared.queues import consume

log = logging.getLogger(__name__)

RPC_EXCHANGE = "nameko-rpc"
# A reply queue outlives a dropped connection by this much, so replies sent while the
# consumer reconnects wait for it; a process that is gone leaves it behind no longer.
REPLY_QUEUE_EXPIRES_MS = 60_000
DEFAULT_TIMEOUT_SECONDS = 10.0
# What a service's worker finds in its context data (nameko strips the "nameko." prefix).
DEADLINE_HEADER = "nameko.deadline"
IDEMPOTENCY_KEY_HEADER = "nameko.idempotency_key"
# The Idempotency-Key of the request being served (the gateway sets it for creating operations); it
# goes with the calls made meanwhile, and the service that creates keeps it (shared/idempotency.py).
idempotency_key_var = contextvars.ContextVar("idempotency_key", default=None)
# A call beyond ``calls_per_service`` waits for a slot as long as the service's calls end; when none has
# ended (and no slot was taken) for this long, the service looks hung and the call is refused.
SLOT_STALL_SECONDS = 1.0
PATIENT_RETRY_SECONDS = 1.0  # how often a patient call looks for a replica of a service that is not running


def timeout_of(config):
    """How long a call may wait for its answer: the configuration's RPC_TIMEOUT_SECONDS."""
    return float(config.get("RPC_TIMEOUT_SECONDS") or DEFAULT_TIMEOUT_SECONDS)


def rpc_queue(service):
    """The queue nameko's RPC entrypoints of ``service`` consume."""
    return f"rpc-{service}"


class RemoteError(StewardError):
    """An error a service raised that is not one of Steward's typed errors."""

    code = "remote_error"
    http_status = 500


class _PendingCall:
    __slots__ = ("event", "body")

    def __init__(self):
        self.event = threading.Event()
        self.body = None


class RpcClient:
    def __init__(self, amqp_uri, timeout=DEFAULT_TIMEOUT_SECONDS, caller="gateway", reconnect_delay=0.5,
                 calls_per_service=None, reply_heartbeat=30):
        self.amqp_uri = amqp_uri
        self.reply_heartbeat = reply_heartbeat  # seconds: the reply connection's AMQP heartbeat
        self.timeout = timeout
        self.caller = caller
        self.reconnect_delay = reconnect_delay
        self.calls_per_service = calls_per_service
        self.exchange = Exchange(RPC_EXCHANGE, type="topic", durable=True)
        self._reply_key = str(uuid.uuid4())
        self._pending = {}
        self._slots, self._moved = {}, {}  # service: its slots; when one of them was last taken or freed
        self._publish_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._pid = None
        self._stopping = threading.Event()
        self._consumer_ready = threading.Event()
        self._reply_queue_made = False  # in this process (_ensure_started)
        self._publisher = None
        self._producer = None
        self._inspector = None

    # -- lifecycle -----------------------------------------------------
    def _ensure_started(self):
        # Started lazily, and again after a fork: gunicorn forks workers after
        # loading the app, and connections must not be shared across processes.
        if self._pid != os.getpid():
            with self._start_lock:
                if self._pid != os.getpid():
                    self._reply_key = str(uuid.uuid4())
                    self._pending, self._slots, self._moved = {}, {}, {}
                    self._stopping.clear()
                    self._consumer_ready.clear()
                    self._reply_queue_made = False
                    self._publisher = self._producer = self._inspector = None
                    thread = threading.Thread(target=self._consume_forever, name="rpc-replies", daemon=True)
                    thread.start()
                    self._pid = os.getpid()
        # Every caller waits until this process's reply queue exists, not only the one that started its consumer:
        # a reply to a queue not yet declared is dropped by the broker. Once made, the queue outlives a reconnect.
        if self._reply_queue_made:
            return
        if not self._consumer_ready.wait(self.timeout):
            raise ServiceUnavailable("message broker is not reachable", {"broker": [self._safe_uri()]})
        self._reply_queue_made = True

    @property
    def connected(self):
        """Whether this process's reply consumer is connected: a local fact, no round trip."""
        return self._pid == os.getpid() and self._consumer_ready.is_set()

    def close(self):
        self._stopping.set()
        with self._publish_lock:
            self._drop_publisher()
        self._pid = None

    def _named(self, role):
        """The connection's name in RabbitMQ's connection list (and management UI)."""
        return {"client_properties": {"connection_name": f"steward {self.caller} rpc {role} (pid {os.getpid()})"}}

    def _safe_uri(self):
        return Connection(self.amqp_uri).as_uri()  # kombu masks the password

    def _reply_queue(self):
        return Queue(
            f"rpc.reply-{self.caller}-{self._reply_key}",
            exchange=self.exchange,
            routing_key=self._reply_key,
            exclusive=False,
            auto_delete=False,
            queue_arguments={"x-expires": REPLY_QUEUE_EXPIRES_MS},
        )

    def _consume_forever(self):
        while not self._stopping.is_set():
            try:
                with Connection(self.amqp_uri, heartbeat=self.reply_heartbeat, transport_options=self._named("replies")) as conn:
                    conn.connect()
                    with Consumer(conn, queues=[self._reply_queue()], callbacks=[self._on_reply], accept=["json"]):
                        self._consumer_ready.set()
                        consume(conn, self._stopping)
            except Exception as exc:  # reconnect on any broker trouble
                self._consumer_ready.clear()
                if self._stopping.is_set():
                    return
                log.warning("rpc reply consumer lost its connection; reconnecting", extra={"error": str(exc)})
                time.sleep(self.reconnect_delay)

    def _on_reply(self, body, message):
        pending = self._pending.pop(message.properties.get("correlation_id"), None)
        if pending is not None:
            pending.body = body
            pending.event.set()
        # Acknowledged once handed over: a reply on its way when the connection dropped is delivered again.
        message.ack()

    def _get_producer(self):
        if self._producer is None:
            self._publisher = Connection(self.amqp_uri, transport_options={"confirm_publish": True, **self._named("requests")})
            self._producer = Producer(self._publisher.channel(), exchange=self.exchange, serializer="json")
        return self._producer

    def _drop_publisher(self):
        if self._publisher is not None:
            self._publisher.release()
        self._publisher = self._producer = self._inspector = None

    def _consumers(self, service):
        """How many consumers the broker has on the service's queue (0: none, or no such queue)."""
        if self._inspector is None:
            self._inspector = self._get_producer().channel.connection.channel()
        try:
            return self._inspector.queue_declare(queue=rpc_queue(service), passive=True).consumer_count
        except QueueNotFound:  # the broker closed the channel with the 404: open another next time
            self._inspector = None
            return 0

    # -- calls ---------------------------------------------------------
    def call(self, service, method, *args, timeout=None, **kwargs):
        return self.request(service, method, args, kwargs, timeout)

    def request(self, service, method, args=(), kwargs=None, timeout=None, request_id=None, deadline=None,
                idempotency_key=None):
        """``call`` with the request id given (default: the context's) rather than taken from the context.

        ``deadline`` (Unix seconds) shortens the call's timeout, never lengthens it: a worker's
        calls end when its own caller stops waiting. ``idempotency_key`` (default: the context's)
        goes with the request for a creating call to answer a repeat with its first answer.
        """
        # First: a process's first call connects (its reply consumer), and under load that can take seconds that
        # must not come out of the service's time (its request would arrive with its deadline nearly gone).
        self._ensure_started()
        now = time.time()
        deadline = min(now + (timeout or self.timeout), deadline or float("inf"))
        if deadline <= now:
            raise ServiceUnavailable(f"no time left to ask {service} for {method}: the request's deadline has passed",
                                     {"service": [service]})
        correlation_id = str(uuid.uuid4())
        request_id = request_id or request_id_var.get()
        idempotency_key = idempotency_key or idempotency_key_var.get()
        headers = {"nameko.call_id_stack": [f"{self.caller}.{method}.{correlation_id}"], DEADLINE_HEADER: deadline}
        if request_id:
            headers["nameko.request_id"] = request_id
        if idempotency_key:
            headers[IDEMPOTENCY_KEY_HEADER] = idempotency_key
        slot = self._take_slot(service, deadline)
        pending = self._pending[correlation_id] = _PendingCall()
        try:
            self._publish(service, {"args": list(args), "kwargs": kwargs or {}}, f"{service}.{method}",
                          correlation_id, headers)
            if not pending.event.wait(max(0.0, deadline - time.time())):
                raise ServiceUnavailable(
                    f"service {service} did not answer {method} within {deadline - now:g} s",
                    {"service": [service]},
                )
        finally:
            self._pending.pop(correlation_id, None)
            if slot is not None:
                self._moved[service] = time.monotonic()
                slot.release()
        error = pending.body.get("error")
        if error:
            typed = from_remote(error.get("exc_type"), error.get("exc_args") or [])
            if typed is not None:
                raise typed
            raise RemoteError(f"{service}.{method} failed: {error.get('exc_type')}: {error.get('value')}")
        return pending.body.get("result")

    def _take_slot(self, service, deadline):
        """One of the service's ``calls_per_service`` slots in this process. Beyond them a call waits its turn
        while calls to the service end (a slow service is still answering), and gets 503 once none has ended
        for ``SLOT_STALL_SECONDS`` (a hung one: the thread is not held until the deadline)."""
        if not self.calls_per_service:
            return None
        slot = self._slots.get(service)
        if slot is None:
            slot = self._slots.setdefault(service, threading.BoundedSemaphore(self.calls_per_service))
        while True:
            if slot.acquire(timeout=max(0.0, min(SLOT_STALL_SECONDS, deadline - time.time()))):
                self._moved[service] = time.monotonic()
                return slot
            stalled = time.monotonic() - self._moved.get(service, 0.0) >= SLOT_STALL_SECONDS
            if stalled or time.time() >= deadline:
                raise ServiceUnavailable(
                    f"service {service} is busy: {self.calls_per_service} calls from this process are waiting "
                    f"for it", {"service": [service]})

    def _publish(self, service, body, routing_key, correlation_id, headers):
        with self._publish_lock:
            for attempt in (1, 2):
                try:
                    consumers = self._consumers(service)
                    if consumers:
                        self._get_producer().publish(
                            body,
                            routing_key=routing_key,
                            reply_to=self._reply_key,
                            correlation_id=correlation_id,
                            headers=headers,
                        )
                    break
                except Exception as exc:  # a dropped connection: reconnect once
                    self._drop_publisher()
                    if attempt == 2:
                        raise ServiceUnavailable("message broker is not reachable", {"broker": [str(exc)]}) from exc
        if not consumers:
            raise ServiceNotRunning(f"service {service} is not running", {"service": [service]})

    def service(self, name, request_id=None, deadline=None):
        return ServiceClient(self, name, request_id, deadline)


class ServiceClient:
    """``client.service("inventory").get_server(1)`` reads like a nameko proxy; ``request_id``
    (a worker's, say) goes with every call, else the calling context's; ``deadline`` (a
    worker's) bounds every call."""

    def __init__(self, client, name, request_id=None, deadline=None, timeout=None, patience=0.0):
        self._client, self._name, self._request_id, self._deadline = client, name, request_id, deadline
        self._timeout, self._patience = timeout, patience

    def waiting(self, seconds):
        """The same client with calls that wait ``seconds`` instead of the client's timeout: for the few
        calls whose work is known to take longer (an uninstall over SSH)."""
        return ServiceClient(self._client, self._name, self._request_id, self._deadline, seconds, self._patience)

    def patient(self, seconds):
        """The same client with calls that, while no replica of the service runs, wait up to ``seconds`` for
        one rather than failing at once: for background work (a task's last step after an install that took
        minutes), not for a person waiting on an answer. Only a request never sent is sent again."""
        return ServiceClient(self._client, self._name, self._request_id, self._deadline, self._timeout, seconds)

    def __getattr__(self, method):
        def call(*args, **kwargs):
            give_up = time.monotonic() + self._patience
            while True:
                try:
                    return self._client.request(self._name, method, args, kwargs, timeout=self._timeout,
                                                request_id=self._request_id, deadline=self._deadline)
                except ServiceNotRunning:
                    if time.monotonic() >= give_up:
                        raise
                    log.info("service %s is not running: %s waits for a replica", self._name, method)
                    time.sleep(PATIENT_RETRY_SECONDS)

        return call
