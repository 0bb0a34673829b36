"""Read what a service emits during a test, from a queue of the test's own."""
import contextlib
import uuid

from kombu import Connection, Exchange, Queue


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

    try:
        yield drain
    finally:
        bound.delete()
        connection.release()
