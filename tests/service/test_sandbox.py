"""A benchmark's vhost is recreated (scripts/sandbox.py: ensure_vhost(recreate=True)): an earlier run's queued
messages, left by a run that was interrupted, must not be consumed and counted by the next one."""
import os
import subprocess

import pika
import pytest

from scripts.sandbox import ensure_vhost

VHOST = f"{os.environ.get('STEWARD_TEST_VHOST', 'steward_test')}_sandbox"


@pytest.fixture(autouse=True)
def _drop_vhost():
    yield
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", VHOST], capture_output=True)


def _queued(vhost, queue):
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", virtual_host=vhost))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    except pika.exceptions.ChannelClosedByBroker:
        return None  # no such queue
    finally:
        if connection.is_open:
            connection.close()


def test_a_recreated_vhost_keeps_no_queued_message_and_an_ensured_one_keeps_them():
    vhost = VHOST
    ensure_vhost(vhost, recreate=True)
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", virtual_host=vhost))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("left.behind", durable=True)
    channel.basic_publish("", "left.behind", b"from an interrupted run", pika.BasicProperties(delivery_mode=2))
    connection.close()

    ensure_vhost(vhost)
    assert _queued(vhost, "left.behind") == 1  # ensuring keeps what is there (the tests' own vhosts)

    ensure_vhost(vhost, recreate=True)
    assert _queued(vhost, "left.behind") is None
