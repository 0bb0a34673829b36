"""A consumer stopping while the database is away leaves its batch on the queue, never dead-lettered."""
import pytest
from sqlalchemy.exc import OperationalError

from services.monitoring_ingest.consumer import BatchConsumer, _Interrupted


class Unreachable:
    def begin(self):
        raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))


class Writer:
    def write(self, connection, messages):
        raise AssertionError("nothing can be written")


def test_a_transient_failure_while_stopping_is_an_interruption_not_a_refusal(monkeypatch):
    consumer = BatchConsumer("amqp://unused", Unreachable(), writer=Writer())
    consumer.known_partitions = {"all"}
    monkeypatch.setattr("services.monitoring_ingest.partitions.missing", lambda moments, known: [])
    consumer.stop()
    messages = [{"collected_at": None}, {"collected_at": None}]
    with pytest.raises(_Interrupted):
        consumer.store(messages, [1, 2])
