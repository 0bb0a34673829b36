"""Steward's queues on the broker.

The durable work queues (the agent path) are classic queues on one RabbitMQ node and quorum queues on
a cluster: one setting, ``queue_type`` in the configuration (``STEWARD_QUEUE_TYPE``). A queue keeps the
type it was first declared with, so set it before the first start; RabbitMQ refuses to declare an
existing queue as the other type.

``consume`` is the loop of every long-lived kombu consumer thread (the RPC client's replies, the
gateway's revocation feed).
"""
import os
import socket

from shared.config import ConfigError

QUEUE_TYPES = ("classic", "quorum")


def durable_queue_arguments(queue_type=None):
    """Queue arguments for ``queue_type`` (default: $STEWARD_QUEUE_TYPE, else classic)."""
    queue_type = queue_type or os.environ.get("STEWARD_QUEUE_TYPE") or "classic"
    if queue_type not in QUEUE_TYPES:
        raise ConfigError(f"queue_type must be one of {', '.join(QUEUE_TYPES)}, not {queue_type!r}")
    # Classic is what a queue declared without the argument is: no argument, so queues made before stay equal.
    return {"x-queue-type": "quorum"} if queue_type == "quorum" else {}


def consume(connection, stopping, timeout=1.0):
    """Delivers ``connection``'s messages to its consumers' callbacks until ``stopping`` is set, and keeps its AMQP
    heartbeats going whether messages arrive or not. kombu sends heartbeats only from ``heartbeat_check``; a
    consumer that sends the broker nothing else (``no_ack``) and checked only when a wait timed out sent none
    while messages kept coming, and the broker closed its busy connection as dead after its heartbeat timeout,
    dropping what was in flight to it."""
    while not stopping.is_set():
        try:
            connection.drain_events(timeout=timeout)
        except socket.timeout:
            pass
        connection.heartbeat_check()
