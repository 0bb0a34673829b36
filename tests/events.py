"""Read what a service emits during a test, from a queue of the test's own."""
import contextlib
import uuid

from kombu import Connection, Exchange, Queue

from shared.events import build_event
from shared.publisher import event_publisher
from tests.waiting import wait_for


@contextlib.contextmanager
def capture_events(settings, source):
    """Yields drain(): every (event name, payload) ``source`` emitted so far, in order, once each."""
    connection = Connection(settings.amqp_uri)
    queue = Queue(f"test-{source}-events-{uuid.uuid4().hex[:6]}", Exchange(f"{source}.events", type="topic", durable=True),
                  routing_key="#", auto_delete=True, durable=False)
    bound = queue(connection.default_channel)
    bound.declare()

    def drain():
        received = []
        while (message := bound.get(no_ack=True)) is not None:
            received.append((message.delivery_info["routing_key"], message.payload))
        return received

    def until(name, timeout=15, **fields):
        """Every event drained until one called ``name`` with ``fields`` came: events leave through the
        outbox after the commit, so a task seen finished may not have said so on the broker yet."""
        received = []

        def came():
            received.extend(drain())
            return any(n == name and all(p.get(k) == v for k, v in fields.items()) for n, p in received)

        wait_for(came, timeout=timeout, what=f"{name} {fields}")
        return received

    drain.until = until
    try:
        yield drain
    finally:
        bound.delete()
        connection.release()


def event_sender(settings, source):
    """send(name, **payload) -> body: publish a catalogued event as ``source``'s outbox relay does, for tests
    that play that service; ``send.again(body)`` publishes the same event (same id) once more."""
    publish = event_publisher(settings, source)

    def send(name, **payload):
        body = dict(build_event(name, **payload), sequence=1)
        publish(name, body)
        return body

    send.again = lambda body: publish(body["event"], body)
    return send
