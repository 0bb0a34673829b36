"""Publishing on the broker: events from the outbox, and the gateway's agent traffic.

``event_publisher(config, source)`` is what an outbox relay (shared/outbox.py)
publishes ``source``'s events with: nameko's own standalone dispatcher, with
publisher confirms, so a consumer's nameko ``event_handler`` gets them as if a
nameko service had dispatched them. Nothing else publishes events: they are
emitted into the outbox.

``ConfirmedPublisher`` is the gateway's publisher of agent heartbeats: a
message is accepted once RabbitMQ has it. gunicorn's gthread workers publish
from several threads at once. Each thread keeps its own connection and channel
(publisher confirms are per channel, and a wait for one confirm must not hold
the other threads back); they are made lazily and again after a fork.
``mandatory`` turns "no queue is bound", for example before monitoring-ingest
ever ran, into an error instead of a loss. Every message carries the
connection's user as ``user_id`` (RabbitMQ checks it), which is how the ingest
consumer knows the control plane relayed it.

``LoopPublisher`` publishes the same messages from an event loop that its
caller runs (the gateway worker's main loop, gateway/worker.py): ``publish``
returns at once and calls back when the broker confirmed the message or did
not take it, so one connection carries any number of messages in flight and
nothing waits for a confirm. It connects in a thread of its own, so a broker
that is away never holds the loop; until it is connected, ``ready()`` is False
and the caller publishes the blocking way.
"""
import json
import logging
import os
import socket
import threading
import time
from collections import OrderedDict

from kombu import Connection, Exchange, Producer
from nameko.standalone.events import event_dispatcher, get_event_exchange

from shared.errors import ServiceUnavailable

log = logging.getLogger("shared.publisher")


def event_publisher(config, source):
    """publish(name, body) of ``source``'s events, returning once the broker confirmed it."""
    # Declared by the first publish too: on a fresh vhost nothing may have declared <source>.events yet.
    dispatch = event_dispatcher(config, declare=[get_event_exchange(source, config)])
    return lambda name, body: dispatch(source, name, body)


def event_exchange(config, source):
    """``source``'s events exchange, declared as its relay declares it: for a consumer's queue of its own."""
    return get_event_exchange(source, config)


def _nothing_consumes(routing_key):
    """A mandatory message the broker returned: no queue is bound for its routing key."""
    return ServiceUnavailable(f"nothing consumes {routing_key} yet; try again later", {"routing_key": [routing_key]})


def _unreachable(exc):
    return ServiceUnavailable("message broker is not reachable", {"broker": [str(exc) or repr(exc)]})


def _release(connection):
    """Close a kombu connection that may be broken already."""
    try:
        connection.release()
    except Exception:
        pass


class _ThreadChannel:
    def __init__(self, amqp_uri, exchange, name):
        self.pid = os.getpid()
        self.returned = []
        self.connection = Connection(amqp_uri, heartbeat=0, transport_options={
            "confirm_publish": True, "client_properties": {"connection_name": name}})
        self.producer = Producer(self.connection.channel(), exchange=exchange, serializer="json",
                                 on_return=lambda exc, exchange, routing_key, message: self.returned.append(routing_key))
        exchange(self.producer.channel).declare()

    def close(self):
        _release(self.connection)


class ConfirmedPublisher:
    def __init__(self, amqp_uri, exchange_name, exchange_type="topic"):
        self.amqp_uri = amqp_uri
        self.user_id = Connection(amqp_uri).userid
        self.exchange = Exchange(exchange_name, type=exchange_type, durable=True)
        self._local = threading.local()
        self._channels = []
        self._lock = threading.Lock()

    def _channel(self):
        channel = getattr(self._local, "channel", None)
        if channel is None or channel.pid != os.getpid():
            channel = _ThreadChannel(self.amqp_uri, self.exchange, self.connection_name())
            self._local.channel = channel
            with self._lock:
                self._channels.append(channel)
        return channel

    def connection_name(self):
        """What the broker's management API shows for this process's publishing connections."""
        return f"steward publisher {self.exchange.name} pid {os.getpid()}"

    def publish(self, body, routing_key):
        """Publish a JSON body, persistent; returns once the broker confirmed it, else raises ServiceUnavailable."""
        for attempt in (1, 2):
            try:
                channel = self._channel()
                channel.returned.clear()
                channel.producer.publish(body, routing_key=routing_key, mandatory=True, delivery_mode=2,
                                         user_id=self.user_id)
                break
            except Exception as exc:  # a dropped connection: a fresh one, once
                self._discard()
                if attempt == 2:
                    raise _unreachable(exc) from exc
        if channel.returned:
            raise _nothing_consumes(routing_key)

    def _discard(self):
        channel = getattr(self._local, "channel", None)
        self._local.channel = None
        if channel is not None:
            channel.close()

    def close(self):
        with self._lock:
            channels, self._channels = self._channels, []
        for channel in channels:
            channel.close()


class LoopPublisher:
    """Confirmed publishing driven by the caller's poller (the module says why).

    ``call_soon(fn)`` runs ``fn`` on the loop's thread (thread-safe); ``register(sock, fn)`` and
    ``unregister(sock)`` watch a socket for reading on the loop. Every callback runs on the loop's thread.
    A message not confirmed within ``confirm_seconds`` fails (``expire``, called by the loop's ticks), and
    so does every message in flight when the connection fails; the connection is then made again, no
    sooner than ``retry_seconds`` after the last try.
    """

    def __init__(self, amqp_uri, exchange_name, call_soon, register, unregister, exchange_type="topic",
                 confirm_seconds=5.0, retry_seconds=1.0, write_seconds=2.0):
        self.amqp_uri = amqp_uri
        self.exchange = Exchange(exchange_name, type=exchange_type, durable=True)
        self.properties = {"delivery_mode": 2, "user_id": Connection(amqp_uri).userid}
        self.call_soon, self.register, self.unregister = call_soon, register, unregister
        self.confirm_seconds, self.retry_seconds, self.write_seconds = confirm_seconds, retry_seconds, write_seconds
        self.connection = self.channel = None
        self.connecting = False
        self.tried_at = None
        self.unconfirmed = OrderedDict()  # delivery tag -> [done, routing key, returned, published at]
        self.next_tag = 1
        self.closed = False

    def connection_name(self):
        return f"steward loop publisher {self.exchange.name} pid {os.getpid()}"

    def ready(self):
        """Whether ``publish`` can take a message now; if not, a connection is on its way (unless one was tried
        less than ``retry_seconds`` ago)."""
        if self.channel is not None:
            return True
        if not self.connecting and not self.closed and (
                self.tried_at is None or time.monotonic() - self.tried_at >= self.retry_seconds):
            self.connecting, self.tried_at = True, time.monotonic()
            threading.Thread(target=self._connect, name="loop-publisher-connect", daemon=True).start()
        return False

    def _connect(self):
        try:
            connection = Connection(self.amqp_uri, heartbeat=0, connect_timeout=5, transport_options={
                "write_timeout": self.write_seconds, "client_properties": {"connection_name": self.connection_name()}})
            channel = connection.default_channel
            self.exchange(channel).declare()
            channel.confirm_select()
            # py-amqp reads the socket before every publish when the broker may block the connection (a
            # tenth of a busy gateway's time); the poller reads it anyway, and a blocked connection stops
            # confirming, which ``expire`` answers. Alone: 43 -> 30 us of CPU per message.
            connection.connection.client_properties["capabilities"]["connection.blocked"] = False
        except Exception as exc:
            log.warning("loop publisher: cannot connect to the broker: %s", exc)
            self.call_soon(self._not_connected)
            return
        self.call_soon(lambda: self._connected(connection, channel))

    def _not_connected(self):
        self.connecting = False

    def _connected(self, connection, channel):
        self.connecting = False
        if self.closed:
            _release(connection)
            return
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self.connection, self.channel, self.next_tag = connection, channel, 1
        self.register(connection.connection.sock, self.on_readable)

    def publish(self, body, routing_key, done):
        """Send a JSON body, persistent and mandatory; ``done(None)`` once confirmed, else ``done(error)``."""
        message = self.channel.prepare_message(json.dumps(body, separators=(",", ":")).encode(),
                                               content_type="application/json", content_encoding="utf-8",
                                               properties=self.properties)
        self.unconfirmed[self.next_tag] = [done, routing_key, False, time.monotonic()]
        self.next_tag += 1
        try:
            self.channel.basic_publish(message, exchange=self.exchange.name, routing_key=routing_key, mandatory=True)
        except Exception as exc:
            self._fail(exc)

    def on_readable(self, *_):
        """The broker sent something: take every whole frame there is (confirms, returns), without waiting."""
        try:
            while True:
                self.connection.drain_events(timeout=0)
        except socket.timeout:  # no whole frame left (a partial one stays buffered)
            pass
        except Exception as exc:
            self._fail(exc)

    def expire(self):
        """Fail what the broker has not confirmed within ``confirm_seconds``: it takes the connection with it."""
        if self.unconfirmed and time.monotonic() - next(iter(self.unconfirmed.values()))[3] > self.confirm_seconds:
            self._fail(TimeoutError(f"the broker confirmed nothing for {self.confirm_seconds:g} s"))

    def _settle(self, delivery_tag, multiple):
        if not multiple:
            entry = self.unconfirmed.pop(delivery_tag, None)
            return [entry] if entry is not None else []
        settled = []
        while self.unconfirmed and next(iter(self.unconfirmed)) <= delivery_tag:
            settled.append(self.unconfirmed.popitem(last=False)[1])
        return settled

    def _on_ack(self, delivery_tag, multiple):
        for done, routing_key, returned, _ in self._settle(delivery_tag, multiple):
            done(_nothing_consumes(routing_key) if returned else None)

    def _on_nack(self, delivery_tag, multiple):
        for done, *_ in self._settle(delivery_tag, multiple):
            done(ServiceUnavailable("the message broker refused the message; try again later"))

    def _on_return(self, exc, exchange, routing_key, message):
        # A returned message comes just before its own confirm: the first unconfirmed one with its key.
        for entry in self.unconfirmed.values():
            if entry[1] == routing_key and not entry[2]:
                entry[2] = True
                return

    def _fail(self, exc):
        log.warning("loop publisher: lost its broker connection: %s", exc)
        connection, self.connection, self.channel = self.connection, None, None
        if connection is not None:
            try:
                self.unregister(connection.connection.sock)
            except (KeyError, ValueError, OSError, AttributeError):
                pass
            _release(connection)
        failed, self.unconfirmed = list(self.unconfirmed.values()), OrderedDict()
        error = _unreachable(exc)
        for done, *_ in failed:
            done(error)

    def close(self):
        """The loop has ended: the connection goes, and no callback runs any more (their loop is gone)."""
        self.closed = True
        connection, self.connection, self.channel, self.unconfirmed = self.connection, None, None, OrderedDict()
        if connection is not None:
            _release(connection)
