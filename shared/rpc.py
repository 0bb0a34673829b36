"""A pooled, thread-safe RPC client that speaks nameko's AMQP protocol.

The gateway runs in plain threads (gunicorn gthread), not eventlet, and a
standalone nameko proxy per request costs tens of milliseconds. One client
per process keeps two long-lived connections: one publishes requests (with
publisher confirms and ``mandatory``, so a call to a service with no running
replica fails at once instead of timing out), the other consumes the replies
of every thread from one reply queue of the process's own and hands each to
its caller by correlation id. The queue outlives a dropped connection, so a
reply sent while the consumer reconnects is delivered, not lost.
"""
import logging
import os
import socket
import threading
import time
import uuid

from kombu import Connection, Consumer, Exchange, Producer, Queue

from shared.errors import ServiceUnavailable, StewardError, from_remote
from shared.logs import request_id_var

log = logging.getLogger(__name__)

RPC_EXCHANGE = "nameko-rpc"
# A reply queue outlives a dropped connection by this much, so replies sent while the
# consumer reconnects wait for it; a process that is gone leaves it behind no longer.
REPLY_QUEUE_EXPIRES_MS = 60_000


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
    def __init__(self, amqp_uri, timeout=10.0, caller="gateway", reconnect_delay=0.5):
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self.caller = caller
        self.reconnect_delay = reconnect_delay
        self.exchange = Exchange(RPC_EXCHANGE, type="topic", durable=True)
        self._reply_key = str(uuid.uuid4())
        self._pending = {}
        self._returned = set()
        self._publish_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._pid = None
        self._stopping = threading.Event()
        self._consumer_ready = threading.Event()
        self._publisher = None
        self._producer = None

    # -- lifecycle -----------------------------------------------------
    def _ensure_started(self):
        # Started lazily, and again after a fork: gunicorn forks workers after
        # loading the app, and connections must not be shared across processes.
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._reply_key = str(uuid.uuid4())
            self._pending, self._returned = {}, set()
            self._stopping.clear()
            self._consumer_ready.clear()
            self._publisher = self._producer = None
            thread = threading.Thread(target=self._consume_forever, name="rpc-replies", daemon=True)
            thread.start()
            self._pid = os.getpid()
        if not self._consumer_ready.wait(self.timeout):
            raise ServiceUnavailable("message broker is not reachable", {"broker": [self._safe_uri()]})

    def close(self):
        self._stopping.set()
        with self._publish_lock:
            if self._publisher is not None:
                self._publisher.release()
                self._publisher = None
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
                with Connection(self.amqp_uri, heartbeat=30, transport_options=self._named("replies")) as conn:
                    conn.connect()
                    with Consumer(conn, queues=[self._reply_queue()], callbacks=[self._on_reply], no_ack=True, accept=["json"]):
                        self._consumer_ready.set()
                        while not self._stopping.is_set():
                            try:
                                conn.drain_events(timeout=1)
                            except socket.timeout:
                                conn.heartbeat_check()
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

    def _on_return(self, exception, exchange, routing_key, message):
        self._returned.add(message.properties.get("correlation_id"))

    def _get_producer(self):
        if self._producer is None:
            self._publisher = Connection(self.amqp_uri, transport_options={"confirm_publish": True, **self._named("requests")})
            channel = self._publisher.channel()
            self._producer = Producer(channel, exchange=self.exchange, serializer="json", on_return=self._on_return)
        return self._producer

    # -- calls ---------------------------------------------------------
    def call(self, service, method, *args, timeout=None, **kwargs):
        self._ensure_started()
        correlation_id = str(uuid.uuid4())
        request_id = request_id_var.get()
        headers = {"nameko.call_id_stack": [f"{self.caller}.{method}.{correlation_id}"]}
        if request_id:
            headers["nameko.request_id"] = request_id
        pending = self._pending[correlation_id] = _PendingCall()
        try:
            self._publish({"args": list(args), "kwargs": kwargs}, f"{service}.{method}", correlation_id, headers)
            if correlation_id in self._returned:
                self._returned.discard(correlation_id)
                raise ServiceUnavailable(f"service {service} is not running", {"service": [service]})
            if not pending.event.wait(timeout or self.timeout):
                raise ServiceUnavailable(
                    f"service {service} did not answer {method} within {timeout or self.timeout:g} s",
                    {"service": [service]},
                )
        finally:
            self._pending.pop(correlation_id, None)
        error = pending.body.get("error")
        if error:
            typed = from_remote(error.get("exc_type"), error.get("exc_args") or [])
            if typed is not None:
                raise typed
            raise RemoteError(f"{service}.{method} failed: {error.get('exc_type')}: {error.get('value')}")
        return pending.body.get("result")

    def _publish(self, body, routing_key, correlation_id, headers):
        with self._publish_lock:
            for attempt in (1, 2):
                try:
                    self._get_producer().publish(
                        body,
                        routing_key=routing_key,
                        mandatory=True,
                        reply_to=self._reply_key,
                        correlation_id=correlation_id,
                        headers=headers,
                    )
                    return
                except Exception as exc:  # a dropped connection: reconnect once
                    if self._publisher is not None:
                        self._publisher.release()
                    self._publisher = self._producer = None
                    if attempt == 2:
                        raise ServiceUnavailable("message broker is not reachable", {"broker": [str(exc)]}) from exc

    def service(self, name):
        return ServiceClient(self, name)


class ServiceClient:
    """``client.service("inventory").get_server(1)`` reads like a nameko proxy."""

    def __init__(self, client, name):
        self._client, self._name = client, name

    def __getattr__(self, method):
        def call(*args, **kwargs):
            return self._client.call(self._name, method, *args, **kwargs)

        return call
