"""shared/publisher.py's ``ConfirmedPublisher`` (the gateway's heartbeat publisher) against the real broker:
a publish from any of many threads returns only once the broker has the message, a message nothing
consumes is refused without failing the others, a dropped connection is replaced with nothing lost, and
an unreachable broker is a prompt 503."""
import json
import threading
import time
import uuid
from urllib.parse import quote

import pytest
from kombu import Connection, Exchange, Queue

from shared.errors import ServiceUnavailable
from shared.publisher import ConfirmedPublisher
from tests.waiting import wait_for


@pytest.fixture
def exchange_and_queue(settings):
    """A topic exchange of the test's own, and a durable queue bound to it for ``bound.#``."""
    name = f"publisher-test-{uuid.uuid4().hex[:8]}"
    exchange = Exchange(name, type="topic", durable=True)
    queue = Queue(name, exchange=exchange, routing_key="bound.#", durable=True)
    with Connection(settings.amqp_uri) as connection:
        queue(connection.default_channel).declare()
        yield exchange, queue, connection
        queue(connection.default_channel).delete()
        exchange(connection.default_channel).delete()


def _in_queue(connection, queue):
    return queue(connection.default_channel).queue_declare(passive=True).message_count


def _drain(connection, queue):
    bodies, channel = [], connection.default_channel
    while (message := channel.basic_get(queue.name, no_ack=True)) is not None:
        bodies.append(message)
    return bodies


def _publish_from_threads(publisher, threads, each, routing_key):
    errors, barrier = [], threading.Barrier(threads)

    def run(t):
        barrier.wait()
        for n in range(each):
            key = routing_key(t, n)
            try:
                publisher.publish({"thread": t, "n": n}, key)
            except ServiceUnavailable as exc:
                errors.append((key, exc))

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return errors


def test_publishes_from_many_threads_return_once_the_broker_has_them(
        settings, exchange_and_queue):
    exchange, queue, connection = exchange_and_queue
    publisher = ConfirmedPublisher(settings.amqp_uri, exchange.name)
    try:
        errors = _publish_from_threads(publisher, 16, 25, lambda t, n: f"bound.{t}")
        # Every publish returned: each of the 400 is in the queue already, none waiting to be routed.
        assert errors == [] and _in_queue(connection, queue) == 400
    finally:
        publisher.close()
    messages = _drain(connection, queue)
    bodies = [json.loads(m.body) for m in messages]
    assert sorted((b["thread"], b["n"]) for b in bodies) == [(t, n) for t in range(16) for n in range(25)]
    assert {(m.properties["delivery_mode"], m.properties["user_id"], m.properties["content_type"])
            for m in messages} == {(2, Connection(settings.amqp_uri).userid, "application/json")}


def test_a_message_nothing_consumes_is_refused_and_the_others_are_not(settings, exchange_and_queue):
    exchange, queue, connection = exchange_and_queue
    publisher = ConfirmedPublisher(settings.amqp_uri, exchange.name)
    try:
        errors = _publish_from_threads(publisher, 8, 20, lambda t, n: f"bound.{t}" if (t + n) % 3 else f"nowhere.{t}")
    finally:
        publisher.close()
    refused = [key for key, _ in errors]
    expected = [f"nowhere.{t}" for t in range(8) for n in range(20) if not (t + n) % 3]
    assert sorted(refused) == sorted(expected)
    assert all(f"nothing consumes {key} yet" in str(exc) for key, exc in errors)
    assert _in_queue(connection, queue) == 8 * 20 - len(expected)


def test_a_dropped_connection_is_replaced_and_loses_nothing(settings, exchange_and_queue, rabbitmq_management):
    exchange, queue, connection = exchange_and_queue
    publisher = ConfirmedPublisher(settings.amqp_uri, exchange.name)
    try:
        publisher.publish({"n": 0}, "bound.a")

        def mine():  # the management API lists a new connection within its stats interval
            return [c["name"] for c in rabbitmq_management("GET", "/connections")
                    if c.get("client_properties", {}).get("connection_name") == publisher.connection_name()]

        for name in wait_for(mine, what="the publisher's connection in the management API"):
            rabbitmq_management("DELETE", f"/connections/{quote(name, safe='')}")  # closed when this answers
        for n in range(1, 11):  # from the thread whose connection went: a fresh one, nothing refused
            publisher.publish({"n": n}, "bound.a")
        assert _in_queue(connection, queue) >= 11  # a message sent again after the drop may be there twice
    finally:
        publisher.close()


def test_an_unreachable_broker_is_a_prompt_503(settings):
    publisher = ConfirmedPublisher("amqp://guest:guest@127.0.0.1:1//", "nowhere")
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="message broker is not reachable"):
            publisher.publish({"n": 1}, "bound.a")
        assert time.monotonic() - started < 15
    finally:
        publisher.close()


class _Loop:
    """The least event loop a LoopPublisher needs: a selector, and callbacks from other threads."""

    def __init__(self):
        import queue
        import selectors

        self.selector, self.calls = selectors.DefaultSelector(), queue.Queue()
        self.register = lambda sock, callback: self.selector.register(sock, selectors.EVENT_READ, callback)
        self.unregister = self.selector.unregister

    def run_until(self, condition, seconds=15):
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, "the loop waited in vain"
            while not self.calls.empty():
                self.calls.get()()
            for key, _ in self.selector.select(0.05) if self.selector.get_map() else []:
                key.data()
            time.sleep(0 if self.selector.get_map() else 0.01)


def _loop_publisher(settings, loop, exchange):
    from shared.publisher import LoopPublisher

    publisher = LoopPublisher(settings.amqp_uri, exchange.name, call_soon=loop.calls.put,
                              register=loop.register, unregister=loop.unregister, retry_seconds=0.1)
    loop.run_until(publisher.ready)
    return publisher


def test_a_loop_publisher_has_many_messages_in_flight_and_each_caller_hears_of_its_own(settings, exchange_and_queue):
    exchange, queue, connection = exchange_and_queue
    loop = _Loop()
    publisher = _loop_publisher(settings, loop, exchange)
    outcomes = {}
    for n in range(300):  # every third to a key no queue is bound to
        key = f"nowhere.{n}" if n % 3 == 0 else f"bound.{n}"
        publisher.publish({"n": n}, key, lambda error, n=n: outcomes.__setitem__(n, error))
    assert len(publisher.unconfirmed) > 1  # sent without waiting for one another's confirms
    loop.run_until(lambda: len(outcomes) == 300)
    refused = sorted(n for n, error in outcomes.items() if error is not None)
    assert refused == list(range(0, 300, 3))
    assert all(f"nothing consumes nowhere.{n} yet" in str(outcomes[n]) for n in refused)
    assert _in_queue(connection, queue) == 200
    publisher.close()


def test_a_loop_publisher_fails_what_a_dropped_connection_took_and_connects_again(
        settings, exchange_and_queue, rabbitmq_management):
    exchange, queue, connection = exchange_and_queue
    loop = _Loop()
    publisher = _loop_publisher(settings, loop, exchange)
    outcomes = []
    publisher.publish({"n": 0}, "bound.a", outcomes.append)
    loop.run_until(lambda: outcomes == [None])

    def mine():
        return [c["name"] for c in rabbitmq_management("GET", "/connections")
                if c.get("client_properties", {}).get("connection_name") == publisher.connection_name()]

    for name in wait_for(mine, what="the loop publisher's connection in the management API"):
        rabbitmq_management("DELETE", f"/connections/{quote(name, safe='')}")
    publisher.publish({"n": 1}, "bound.a", outcomes.append)  # on a connection the broker closed
    loop.run_until(lambda: len(outcomes) == 2)
    assert isinstance(outcomes[1], ServiceUnavailable) and "not reachable" in str(outcomes[1])
    assert not publisher.ready()  # a new connection is on its way
    loop.run_until(publisher.ready)
    publisher.publish({"n": 2}, "bound.a", outcomes.append)
    loop.run_until(lambda: len(outcomes) == 3)
    assert outcomes[2] is None
    publisher.close()
