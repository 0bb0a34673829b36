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
"""
import os
import threading

from kombu import Connection, Exchange, Producer
from nameko.standalone.events import event_dispatcher, get_event_exchange

from shared.errors import ServiceUnavailable


def event_publisher(config, source):
    """publish(name, body) of ``source``'s events, returning once the broker confirmed it."""
    # Declared by the first publish too: on a fresh vhost nothing may have declared <source>.events yet.
    dispatch = event_dispatcher(config, declare=[get_event_exchange(source, config)])
    return lambda name, body: dispatch(source, name, body)


def event_exchange(config, source):
    """``source``'s events exchange, declared as its relay declares it: for a consumer's queue of its own."""
    return get_event_exchange(source, config)


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
        try:
            self.connection.release()
        except Exception:
            pass


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
                    raise ServiceUnavailable("message broker is not reachable", {"broker": [str(exc)]}) from exc
        if channel.returned:
            raise ServiceUnavailable(f"nothing consumes {routing_key} yet; try again later",
                                     {"routing_key": [routing_key]})

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
