"""Push mode: publish spooled messages to the broker with publisher confirms; a
message leaves the spool only once the broker confirmed it, so a broker that
is down or restarting loses nothing (the backlog goes out when it is back).
Each message names the agent's broker user as ``user_id``, which RabbitMQ
checks: monitoring-ingest stores only what a server's own user sent for it."""
import json
import logging
import ssl

import pika
import pika.exceptions

log = logging.getLogger("agent.push")

EXCHANGE = "steward.agent"
BATCH = 100


def routing_key(message):
    return "stats.%s.%s" % (message["kind"], message["server_id"])


def connection_parameters(rabbitmq):
    tls = pika.SSLOptions(ssl.create_default_context(cafile=rabbitmq.get("ca")), rabbitmq["host"]) if rabbitmq["tls"] else None
    return pika.ConnectionParameters(
        host=rabbitmq["host"],
        port=rabbitmq["port"],
        virtual_host=rabbitmq["vhost"],
        credentials=pika.PlainCredentials(rabbitmq["user"], rabbitmq["password"]),
        ssl_options=tls,
        heartbeat=30,
        blocked_connection_timeout=30,
        connection_attempts=1,
        socket_timeout=5,
    )


class NotTaken(Exception):
    """The broker returned or refused a message (no queue bound yet, or a nack)."""


class Publisher:
    """Drains the spool to exchange ``steward.agent``; reconnects every ``retry_seconds`` while the broker is away."""

    def __init__(self, spool, rabbitmq, retry_seconds=2.0, connect=pika.BlockingConnection):
        self.spool = spool
        self.parameters = connection_parameters(rabbitmq)
        self.user = rabbitmq["user"]
        self.retry_seconds = retry_seconds
        self.connect = connect

    def run(self, stopping):
        while not stopping.is_set():
            connection = None
            try:
                connection = self.connect(self.parameters)
                channel = connection.channel()
                channel.confirm_delivery()
                # Passive: the control plane owns the exchange; agent credentials may only write to it.
                channel.exchange_declare(EXCHANGE, passive=True)
                log.info("connected to the broker, %d messages spooled", self.spool.pending())
                self._drain(connection, channel, stopping)
            except NotTaken as error:
                log.warning("%s: %d messages stay spooled", error, self.spool.pending())
                stopping.wait(self.retry_seconds)
            except (pika.exceptions.AMQPError, OSError) as error:
                log.warning("broker unavailable (%r): %d messages stay spooled", error, self.spool.pending())
                stopping.wait(self.retry_seconds)
            finally:
                if connection is not None and connection.is_open:
                    try:
                        connection.close()
                    except (pika.exceptions.AMQPError, OSError):
                        pass

    def _drain(self, connection, channel, stopping):
        while not stopping.is_set():
            self.spool.changed.clear()  # before reading, so an append during the read wakes the next wait
            rows = self.spool.read(0, BATCH)
            for cursor, body in rows:
                self._publish(channel, body)
                self.spool.remove([cursor])  # a crash right here resends one message, stored once by identity
            if not rows:
                connection.process_data_events(time_limit=0)
                self.spool.changed.wait(1.0)

    def _publish(self, channel, body):
        message = json.loads(body)
        try:
            channel.basic_publish(
                EXCHANGE,
                routing_key(message),
                body.encode(),
                pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=2,  # persistent
                    message_id="%s.%s.%s" % (message["server_id"], message["kind"], message["seq"]),
                    user_id=self.user,
                ),
                mandatory=True,  # no queue bound yet: keep it spooled rather than lose it
            )
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
            raise NotTaken("the broker did not take %s message %s (%s)"
                           % (message["kind"], message["seq"], error.__class__.__name__))
