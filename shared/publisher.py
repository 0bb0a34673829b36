"""A confirmed publisher for the gateway: a message is accepted once RabbitMQ has it.

gunicorn's gthread workers publish from several threads at once. Each thread
keeps its own connection and channel (publisher confirms are per channel, and
a wait for one confirm must not hold the other threads back); they are made
lazily and again after a fork. ``mandatory`` turns "no queue is bound", for
example before monitoring-ingest ever ran, into an error instead of a loss.
"""
import os
import threading

from kombu import Connection, Exchange, Producer

from shared.errors import ServiceUnavailable


class _ThreadChannel:
    def __init__(self, amqp_uri, exchange):
        self.pid = os.getpid()
        self.returned = []
        self.connection = Connection(amqp_uri, transport_options={"confirm_publish": True}, heartbeat=0)
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
        self.exchange = Exchange(exchange_name, type=exchange_type, durable=True)
        self._local = threading.local()
        self._channels = []
        self._lock = threading.Lock()

    def _channel(self):
        channel = getattr(self._local, "channel", None)
        if channel is None or channel.pid != os.getpid():
            channel = _ThreadChannel(self.amqp_uri, self.exchange)
            self._local.channel = channel
            with self._lock:
                self._channels.append(channel)
        return channel

    def publish(self, body, routing_key):
        """Publish a JSON body, persistent; returns once the broker confirmed it, else raises ServiceUnavailable."""
        for attempt in (1, 2):
            try:
                channel = self._channel()
                channel.returned.clear()
                channel.producer.publish(body, routing_key=routing_key, mandatory=True, delivery_mode=2)
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
