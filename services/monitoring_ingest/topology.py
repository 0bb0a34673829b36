"""RabbitMQ objects of the agent path, declared by whoever gets there first (all idempotent)."""
import json

import pika

from shared.events import build_event
from shared.schemas.agent import EXCHANGE, HEARTBEAT_QUEUE, STATS_QUEUE

DEAD_LETTER_EXCHANGE = "steward.agent.dead"
DEAD_LETTER_QUEUE = "monitoring.dead"
EVENTS_EXCHANGE = "monitoring_ingest.events"  # where nameko's EventDispatcher of this service publishes


def declare_agent_topology(channel):
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, exchange_type="fanout", durable=True)
    channel.queue_declare(DEAD_LETTER_QUEUE, durable=True)
    channel.queue_bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE)
    arguments = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    for queue, pattern in ((STATS_QUEUE, "stats.#"), (HEARTBEAT_QUEUE, "heartbeat.#")):
        channel.queue_declare(queue, durable=True, arguments=arguments)
        channel.queue_bind(queue, EXCHANGE, routing_key=pattern)


class EventPublisher:
    """Publishes catalogued events as nameko's EventDispatcher would, so nameko handlers receive them."""

    def __init__(self, connection):
        self.channel = connection.channel()
        self.channel.confirm_delivery()
        self.channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)

    def publish(self, name, payload):
        self.channel.basic_publish(
            EVENTS_EXCHANGE,
            name,
            json.dumps(build_event(name, **payload)),
            pika.BasicProperties(content_type="application/json", delivery_mode=2),
        )
