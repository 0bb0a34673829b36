"""RabbitMQ objects of the agent path, declared by whoever gets there first (all idempotent)."""
from shared.queues import durable_queue_arguments
from shared.schemas.agent import DEAD_LETTER_QUEUE, EXCHANGE, HEARTBEAT_QUEUE, STATS_QUEUE

DEAD_LETTER_EXCHANGE = "steward.agent.dead"
# Headers of a dead letter: why the consumer refused it, and who had sent it (its user_id cannot travel as ours).
REASON_HEADER = "x-steward-reason"
SENDER_HEADER = "x-steward-user-id"


def declare_agent_topology(channel, queue_type=None):
    """``queue_type``: classic or quorum (shared/queues.py; default $STEWARD_QUEUE_TYPE, else classic)."""
    durable = durable_queue_arguments(queue_type)
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, exchange_type="fanout", durable=True)
    channel.queue_declare(DEAD_LETTER_QUEUE, durable=True, arguments=durable or None)
    channel.queue_bind(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE)
    arguments = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE, **durable}
    for queue, pattern in ((STATS_QUEUE, "stats.#"), (HEARTBEAT_QUEUE, "heartbeat.#")):
        channel.queue_declare(queue, durable=True, arguments=arguments)
        channel.queue_bind(queue, EXCHANGE, routing_key=pattern)
