"""shared/queues.py's ``consume``, the loop of every long-lived consumer thread, against the real broker: a
consumer that acknowledges nothing and gets a message more often than its wait times out still sends its
heartbeats, so the broker does not close its busy connection as dead."""
import threading
import time
import uuid

from kombu import Connection, Consumer, Producer, Queue

from shared.queues import consume


def test_a_busy_consumer_that_acknowledges_nothing_keeps_its_connection(settings):
    queue = Queue(f"consume-test-{uuid.uuid4().hex[:8]}", auto_delete=True)
    received, stopping, failed = [], threading.Event(), []

    def consumer():
        try:
            with Connection(settings.amqp_uri, heartbeat=2) as connection:  # the broker gives up after ~4 s of silence
                connection.connect()
                with Consumer(connection, queues=[queue], callbacks=[lambda body, message: received.append(body)],
                              no_ack=True, accept=["json"]):
                    consume(connection, stopping)
        except Exception as exc:  # the broker closed the connection
            failed.append(exc)

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    with Connection(settings.amqp_uri) as connection:
        producer = Producer(connection.channel(), serializer="json")
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:  # the consumer's queue exists once it got one
            producer.publish({"n": 0}, routing_key=queue.name, declare=[queue])
            time.sleep(0.1)
        for n in range(100):  # 10 s of a message every 0.1 s: consume's 1 s wait never times out
            producer.publish({"n": n}, routing_key=queue.name)
            time.sleep(0.1)
    stopping.set()
    thread.join(10)
    assert not failed, f"the broker closed the busy consumer's connection: {failed[0]!r}"
    assert len(received) >= 100
